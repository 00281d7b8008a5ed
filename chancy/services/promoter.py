"""Promotion: scheduled and retrying jobs whose time has come become ready."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import MaintenanceRepository
from chancy.services.leader import Leadership, while_leading

__all__ = ["PROMOTE_BATCH_DEFAULT", "PROMOTE_INTERVAL_DEFAULT", "Promoter"]

log = logging.getLogger("chancy.promoter")

PROMOTE_INTERVAL_DEFAULT = 0.5
PROMOTE_BATCH_DEFAULT = 1000


class Promoter:
    """Every ``interval`` seconds, while this worker leads, makes due jobs ``pending``
    (``batch`` at a time; a full batch is followed at once by the next). A promoted job
    wakes its queue's workers, so it starts within about ``interval`` of its time."""

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float = PROMOTE_INTERVAL_DEFAULT,
        batch: int = PROMOTE_BATCH_DEFAULT,
    ) -> None:
        self._engine = engine
        self._leadership = leadership
        self._jobs = MaintenanceRepository()
        self.interval = interval
        self.batch = batch

    async def run_once(self) -> int:
        """Promote one batch; returns how many jobs became ready."""
        async with self._engine.begin() as connection:
            return await self._jobs.promote_due_many(connection, self.batch)

    async def run(self) -> None:
        await while_leading(self._leadership, self.interval, self._drain, "promoting", log)

    async def _drain(self) -> None:
        while await self.run_once() == self.batch:
            pass
