"""Cron: the leader pushes the job of every due schedule tick, exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.cron import CRON_GRACE_DEFAULT, Cron, job_of, next_tick
from chancy.repository import PushRepository, ScheduleRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership

__all__ = ["CRON_INTERVAL_DEFAULT", "CronService"]

CRON_INTERVAL_DEFAULT = 1.0


class CronService(LeaderService):
    """Stores ``schedules`` (on :meth:`store`), then every ``interval`` seconds, while
    this worker leads, pushes the jobs of the ticks that came due by ``clock``.

    Each due schedule is handled in one transaction that locks its row, pushes the job
    of its tick and moves ``next_run_at`` to the next tick after now: a leader that dies
    half-way pushes nothing, and two leaders (an old one not yet aware it was deposed)
    cannot push the same tick twice. A tick later than ``grace`` is missed: pushed once
    if the schedule catches up, else skipped. A tick is one transaction: no ``batch``.
    """

    name = "cron"
    activity = "pushing scheduled jobs"

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        schedules: Sequence[Cron],
        *,
        interval: float = CRON_INTERVAL_DEFAULT,
        grace: timedelta = CRON_GRACE_DEFAULT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(engine, leadership, interval=interval)
        self.schedules = tuple(schedules)
        self.grace = grace
        self._clock = clock
        self._jobs = PushRepository()
        self._stored = ScheduleRepository()

    async def store(self) -> None:
        """Write the schedules to the database (a changed expression or zone restarts
        its ticks from now; an unchanged one keeps its next tick)."""
        if not self.schedules:
            return
        now = self._clock()
        async with self._engine.begin() as connection:
            for cron in self.schedules:
                first = next_tick(cron.expression, cron.timezone, now)
                await self._stored.upsert(connection, cron, first)

    async def run_once(self) -> int:
        """Push the jobs of every due tick; returns how many jobs were pushed."""
        now = self._clock()
        pushed = 0
        async with self._engine.begin() as connection:
            for row in await self._stored.lock_due_many(connection, now):
                tick = row["next_run_at"]
                late = now - tick > self.grace
                if not late or row["catch_up"]:
                    job = job_of(row["job"], row["name"], tick)
                    await self._jobs.push_many(connection, [job])
                    pushed += 1
                else:
                    self.log.info("schedule %r missed its tick of %s; skipped", row["name"], tick)
                following = next_tick(row["cron"], row["timezone"], max(now, tick))
                await self._stored.advance(connection, row["name"], tick, following)
        return pushed
