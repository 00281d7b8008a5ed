"""Cron: the leader pushes the job of every due schedule tick, exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chancy.cron import CRON_GRACE_DEFAULT, Cron, job_of, next_tick
from chancy.database.engine import retry_once
from chancy.errors import CorruptJobError, InvalidJobError, InvalidQueueError
from chancy.repository import PushRepository, ScheduleRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership

__all__ = ["CRON_INTERVAL_DEFAULT", "CronService"]

CRON_INTERVAL_DEFAULT = 1.0
# What makes a tick's job impossible to push however often it is tried: the schedule's
# own fault, so its tick is skipped rather than tried again.
_JOB_ERRORS = (InvalidJobError, InvalidQueueError, CorruptJobError)


class CronService(LeaderService):
    """Stores ``schedules`` (on :meth:`store`; with ``prune``, the default, it also
    deletes the stored schedules that are not among them), then every ``interval`` seconds, while
    this worker leads, pushes the jobs of the ticks that came due by ``clock``.

    Each due schedule is handled in a transaction of its own that locks its row, pushes
    the job of its tick and moves ``next_run_at`` to the next tick after now: a leader
    that dies half-way pushes nothing, and two leaders (an old one not yet aware it was
    deposed) cannot push the same tick twice. A tick later than ``grace`` is missed:
    pushed once if the schedule catches up, else skipped. A tick is one transaction per
    schedule: no ``batch``.

    One schedule cannot hold the others back. A tick whose job cannot be pushed (its
    queue is not declared, its stored job is not one this version can make) is skipped:
    the schedule moves on to its next tick. A schedule whose expression or time zone this
    version cannot read (stored by another) cannot move on: it is passed over until a
    worker stores it again. Any other failure (a timeout, say) leaves the tick due, to be
    tried again at the next interval. Each is logged once per schedule and error, not at
    every tick, and once more when the schedule pushes again.
    """

    name = "cron"
    activity = "pushing scheduled jobs"

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        schedules: Sequence[Cron],
        *,
        prune: bool = True,
        interval: float = CRON_INTERVAL_DEFAULT,
        grace: timedelta = CRON_GRACE_DEFAULT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(engine, leadership, interval=interval)
        self.schedules = tuple(schedules)
        self.prune = prune
        self.grace = grace
        self._clock = clock
        self._jobs = PushRepository()
        self._stored = ScheduleRepository()
        self._errors: dict[str, str] = {}  # schedule name: the error last logged
        self._unreadable: dict[str, datetime] = {}  # schedule name: its updated_at then

    async def store(self) -> None:
        """Write the schedules to the database (a changed expression or zone restarts
        its ticks from now; an unchanged one keeps its next tick), and, with ``prune``,
        delete the stored schedules that are not among them, logging each. Workers that
        start together store one after the other (an advisory lock): the last one's
        schedules are those that stand."""
        # Run again on another connection if the first died (idle in the pool, or under a
        # statement): one transaction, so a store cut off rolled back and may run again.
        await retry_once(self._engine.begin, self._store_in, repeatable=True)

    async def _store_in(self, connection: AsyncConnection) -> None:
        now = self._clock()
        await self._stored.take_store_turn(connection)
        for cron in sorted(self.schedules, key=lambda cron: cron.name):
            first = next_tick(cron.expression, cron.timezone, now)
            await self._stored.upsert(connection, cron, first)
        if not self.prune:
            return
        declared = [cron.name for cron in self.schedules]
        for name in await self._stored.delete_except(connection, declared):
            self.log.warning(
                "schedule %r is not declared by this app: removed, it ticks no more "
                "(Chancy(prune_schedules=False) keeps the schedules of other deployments)",
                name,
            )

    async def run_once(self) -> int:
        """Push the jobs of every due tick; returns how many jobs were pushed."""
        now = self._clock()
        async with self._engine.connect() as connection:
            due = await self._stored.list_due(connection, now)
        pushed = 0
        for name, updated_at in due:
            if self._unreadable.get(name) != updated_at:
                pushed += await self._tick(name, now)
        return pushed

    async def _tick(self, name: str, now: datetime) -> int:
        """Handle the due tick of schedule ``name`` in a transaction of its own; returns
        1 if its job was pushed. A failure is logged, not raised."""
        try:
            async with self._engine.begin() as connection:
                row = await self._stored.lock_due(connection, name, now)
                if row is None:  # another leader holds it, or has just handled it
                    return 0
                pushed = await self._push_tick(connection, row, now)
        except Exception as exc:
            self._failed(name, exc, "its tick is tried again at the next interval")
            return 0
        if pushed and self._errors.pop(name, None) is not None:
            self.log.info("schedule %r pushes its jobs again", name)
        return pushed

    async def _push_tick(self, connection: AsyncConnection, row: Any, now: datetime) -> int:
        """Push the job of ``row``'s tick (unless missed) and advance it; returns 1 if
        pushed. A job that cannot be pushed is logged, and its tick skipped."""
        name, tick = row["name"], row["next_run_at"]
        try:
            following = next_tick(row["cron"], row["timezone"], max(now, tick))
        except Exception as exc:
            self._unreadable[name] = row["updated_at"]
            self._failed(
                name, exc, "it is passed over until a worker that can read it stores it again"
            )
            return 0
        pushed = 0
        if now - tick > self.grace and not row["catch_up"]:
            self.log.info("schedule %r missed its tick of %s; skipped", name, tick)
        else:
            try:
                # A savepoint: the failed push is undone, the advance below still holds.
                async with connection.begin_nested():
                    await self._jobs.push_many(connection, [job_of(row["job"], name, tick)])
                pushed = 1
            except _JOB_ERRORS as exc:
                self._failed(name, exc, "its ticks are skipped until this is fixed")
        await self._stored.advance(connection, name, tick, following)
        self._unreadable.pop(name, None)
        return pushed

    def _failed(self, name: str, exc: Exception, consequence: str) -> None:
        """Log that schedule ``name`` failed, unless this same error was the last logged."""
        error = f"{type(exc).__name__}: {exc}"
        if self._errors.get(name) == error:
            return
        self._errors[name] = error
        self.log.warning("schedule %r failed (%s); %s", name, error, consequence)
