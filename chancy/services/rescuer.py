"""Rescue: running jobs whose lease expired go back to ``pending`` (or ``failed``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import MaintenanceRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership
from chancy.states import JobState

__all__ = ["RESCUE_BATCH_DEFAULT", "RESCUE_INTERVAL_DEFAULT", "Rescuer"]

RESCUE_INTERVAL_DEFAULT = 2.0
RESCUE_BATCH_DEFAULT = 1000


class Rescuer(LeaderService):
    """Every ``interval`` seconds, while this worker leads, takes back jobs whose worker
    stopped renewing their lease (killed, frozen, cut off), ``batch`` at a time. A job
    with attempts left is ready again at once; one without ends ``failed``, so a job that
    kills its worker every time cannot loop forever. The lost attempt is recorded in the
    job's ``errors``."""

    name = "rescuer"
    activity = "rescuing"

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float = RESCUE_INTERVAL_DEFAULT,
        batch: int = RESCUE_BATCH_DEFAULT,
    ) -> None:
        super().__init__(engine, leadership, interval=interval, batch=batch)
        self._jobs = MaintenanceRepository()

    async def run_once(self) -> int:
        """Rescue every job whose lease expired; returns how many were taken back."""
        return await self.drain(self._rescue_batch)

    async def _rescue_batch(self, limit: int) -> int:
        async with self._engine.begin() as connection:
            rescued = await self._jobs.rescue_expired_many(connection, limit)
        if rescued:
            failed = sum(1 for state in rescued.values() if state is JobState.FAILED)
            self.log.warning(
                "rescued %d jobs whose lease expired (%d ready again, %d out of attempts)",
                len(rescued),
                len(rescued) - failed,
                failed,
            )
        return len(rescued)
