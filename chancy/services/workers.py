"""The rows of silent workers: the leader deletes those whose heartbeat stopped."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import hot_connection
from chancy.repository import WorkerRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership

__all__ = ["WORKER_PRUNE_BATCH_DEFAULT", "WORKER_PRUNE_INTERVAL_DEFAULT", "WorkerPruner"]

WORKER_PRUNE_INTERVAL_DEFAULT = 60.0
WORKER_PRUNE_BATCH_DEFAULT = 500


class WorkerPruner(LeaderService):
    """Every ``interval`` seconds, while this worker leads, deletes the ``chancy_workers``
    rows that expired (their worker died, or was cut off, without stopping cleanly),
    ``batch`` at a time. A worker that was only slow writes its row back at its next beat.
    """

    name = "worker-pruner"
    activity = "pruning the rows of silent workers"

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float = WORKER_PRUNE_INTERVAL_DEFAULT,
        batch: int = WORKER_PRUNE_BATCH_DEFAULT,
    ) -> None:
        super().__init__(engine, leadership, interval=interval, batch=batch)
        self._workers = WorkerRepository()

    async def run_once(self) -> int:
        """Delete every expired row; returns how many."""
        total = await self.drain(self._prune_batch)
        if total:
            self.log.info("pruned the rows of %d silent workers", total)
        return total

    async def _prune_batch(self, limit: int) -> int:
        async with hot_connection(self._engine) as connection:
            return await self._workers.prune_expired_many(connection, limit)
