"""Promotion: scheduled and retrying jobs whose time has come become ready."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import MaintenanceRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership

__all__ = ["PROMOTE_BATCH_DEFAULT", "PROMOTE_INTERVAL_DEFAULT", "Promoter"]

PROMOTE_INTERVAL_DEFAULT = 0.5
PROMOTE_BATCH_DEFAULT = 1000


class Promoter(LeaderService):
    """Every ``interval`` seconds, while this worker leads, makes due jobs ``pending``
    (``batch`` at a time; a full batch is followed at once by the next). A promoted job
    wakes its queue's workers, so it starts within about ``interval`` of its time."""

    name = "promoter"
    activity = "promoting"

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float = PROMOTE_INTERVAL_DEFAULT,
        batch: int = PROMOTE_BATCH_DEFAULT,
    ) -> None:
        super().__init__(engine, leadership, interval=interval, batch=batch)
        self._jobs = MaintenanceRepository()

    async def run_once(self) -> int:
        """Promote every due job; returns how many became ready."""
        return await self.drain(self._promote_batch)

    async def _promote_batch(self, limit: int) -> int:
        async with self._engine.begin() as connection:
            return await self._jobs.promote_due_many(connection, limit)
