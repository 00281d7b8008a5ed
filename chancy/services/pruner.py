"""Retention: the leader deletes finished jobs once they are old enough."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database import hot_connection
from chancy.repository import MaintenanceRepository
from chancy.services.leader import Leadership, while_leading
from chancy.states import FINISHED_STATES, JobState

__all__ = ["PRUNE_BATCH_DEFAULT", "PRUNE_INTERVAL_DEFAULT", "RETENTION_DEFAULT", "Pruner"]

log = logging.getLogger("chancy.pruner")

PRUNE_INTERVAL_DEFAULT = 60.0
PRUNE_BATCH_DEFAULT = 1000
RETENTION_DEFAULT: Mapping[JobState, timedelta] = {
    JobState.SUCCEEDED: timedelta(days=1),
    JobState.FAILED: timedelta(days=7),
    JobState.CANCELLED: timedelta(days=7),
}


class Pruner:
    """Every ``interval`` seconds, while this worker leads, deletes the jobs of each
    finished state that completed longer ago than that state's ``retention`` (a state
    missing from it is kept forever), ``batch`` at a time, each batch its own short
    statement that skips rows others hold: claims never wait on pruning.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        retention: Mapping[JobState, timedelta] = RETENTION_DEFAULT,
        interval: float = PRUNE_INTERVAL_DEFAULT,
        batch: int = PRUNE_BATCH_DEFAULT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        unknown = set(retention) - FINISHED_STATES
        if unknown:
            raise ValueError(f"retention is for finished states only, not {sorted(unknown)}")
        self._engine = engine
        self._leadership = leadership
        self._jobs = MaintenanceRepository()
        self.retention = dict(retention)
        self.interval = interval
        self.batch = batch
        self._clock = clock

    async def run_once(self) -> int:
        """Prune every state to its retention; returns how many jobs were deleted."""
        now = self._clock()
        total = 0
        for state, keep in self.retention.items():
            while True:
                async with hot_connection(self._engine) as connection:
                    deleted = await self._jobs.prune_finished_before(
                        connection, state, now - keep, self.batch
                    )
                total += deleted
                if deleted < self.batch:
                    break
        if total:
            log.info("pruned %d finished jobs", total)
        return total

    async def run(self) -> None:
        await while_leading(
            self._leadership, self.interval, self.run_once, "pruning finished jobs", log
        )
