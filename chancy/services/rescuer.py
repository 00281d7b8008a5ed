"""Rescue: running jobs whose lease expired go back to ``pending`` (or ``failed``)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import MaintenanceRepository
from chancy.services.leader import Leadership, while_leading
from chancy.states import JobState

__all__ = ["RESCUE_BATCH_DEFAULT", "RESCUE_INTERVAL_DEFAULT", "Rescuer"]

log = logging.getLogger("chancy.rescuer")

RESCUE_INTERVAL_DEFAULT = 2.0
RESCUE_BATCH_DEFAULT = 1000


class Rescuer:
    """Every ``interval`` seconds, while this worker leads, takes back jobs whose worker
    stopped renewing their lease (killed, frozen, cut off). A job with attempts left is
    ready again at once; one without ends ``failed``, so a job that kills its worker every
    time cannot loop forever. The lost attempt is recorded in the job's ``errors``."""

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float = RESCUE_INTERVAL_DEFAULT,
        batch: int = RESCUE_BATCH_DEFAULT,
    ) -> None:
        self._engine = engine
        self._leadership = leadership
        self._jobs = MaintenanceRepository()
        self.interval = interval
        self.batch = batch

    async def run_once(self) -> dict[int, JobState]:
        """Rescue one batch; returns each rescued job's id and new state."""
        async with self._engine.begin() as connection:
            rescued = await self._jobs.rescue_expired_many(connection, self.batch)
        if rescued:
            failed = sum(1 for state in rescued.values() if state is JobState.FAILED)
            log.warning(
                "rescued %d jobs whose lease expired (%d ready again, %d out of attempts)",
                len(rescued),
                len(rescued) - failed,
                failed,
            )
        return rescued

    async def run(self) -> None:
        await while_leading(self._leadership, self.interval, self._drain, "rescuing", log)

    async def _drain(self) -> None:
        while len(await self.run_once()) == self.batch:
            pass
