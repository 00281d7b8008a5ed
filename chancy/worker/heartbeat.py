"""The heartbeat: a worker keeps the leases of the jobs it holds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import hot_connection
from chancy.repository import Attempt, AttemptRepository, WorkerPresence, WorkerRepository

__all__ = ["HEARTBEATS_PER_LEASE", "Heartbeat"]

log = logging.getLogger("chancy.worker")

# Renewals per lease: two may fail in a row before a lease runs out.
HEARTBEATS_PER_LEASE = 3


class Heartbeat:
    """Every ``lease_seconds / 3`` seconds, extends by ``lease_seconds`` the leases of the
    attempts this worker runs (``running()``) and of those whose outcome is not written
    yet (``unwritten()``), in one statement. A running attempt that no longer holds its
    job (cancelled, or taken over once its lease expired) is passed to ``lost(job_id)``,
    which stops its run. A failed renewal is logged and tried again at the next beat.

    ``presence``: the worker's row in ``chancy_workers``, moved on at each beat (after the
    leases, so a failure there never costs a lease) to expire ``lease_seconds`` from now.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        lease_seconds: float,
        running: Callable[[], Sequence[Attempt]],
        unwritten: Callable[[], Sequence[Attempt]],
        lost: Callable[[int], object],
        presence: WorkerPresence | None = None,
    ) -> None:
        self._engine = engine
        self._attempts = AttemptRepository()
        self._workers = WorkerRepository()
        self.presence = presence
        self.lease_seconds = lease_seconds
        self._running = running
        self._unwritten = unwritten
        self._lost = lost

    @property
    def interval(self) -> float:
        return self.lease_seconds / HEARTBEATS_PER_LEASE

    async def run_once(self) -> int:
        """Renew every lease once; returns how many this worker still holds."""
        running = list(self._running())
        async with hot_connection(self._engine) as connection:
            held = await self._attempts.extend_leases_many(
                connection, [*running, *self._unwritten()], self.lease_seconds
            )
            if self.presence is not None:
                try:
                    await self._workers.beat(connection, self.presence, self.lease_seconds)
                except Exception as exc:
                    log.warning("writing the worker's row failed (%s)", exc)
        for attempt in running:
            if attempt.id not in held:
                self._lost(attempt.id)
        return len(held)

    async def run(self) -> None:
        """Beat every :attr:`interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except Exception as exc:
                log.warning(
                    "heartbeat failed (%s); leases expire in %.0f s", exc, self.lease_seconds
                )
