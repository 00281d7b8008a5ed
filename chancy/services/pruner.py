"""Retention: the leader deletes finished jobs once they are old enough."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import hot_connection
from chancy.errors import ConfigurationError
from chancy.repository import MaintenanceRepository
from chancy.services.base import LeaderService
from chancy.services.leader import Leadership
from chancy.states import FINISHED_STATES, JobState

__all__ = [
    "PRUNE_BATCH_DEFAULT",
    "PRUNE_INTERVAL_DEFAULT",
    "RETENTION_DEFAULT",
    "Pruner",
    "checked_retention",
]

PRUNE_INTERVAL_DEFAULT = 60.0
PRUNE_BATCH_DEFAULT = 1000
RETENTION_DEFAULT: Mapping[JobState, timedelta] = {
    JobState.SUCCEEDED: timedelta(days=1),
    JobState.FAILED: timedelta(days=7),
    JobState.CANCELLED: timedelta(days=7),
}


class Pruner(LeaderService):
    """Every ``interval`` seconds, while this worker leads, deletes the jobs of each
    finished state that completed longer ago than that state's ``retention`` (a state
    missing from it is kept forever), ``batch`` at a time, each batch its own short
    statement that skips rows others hold: claims never wait on pruning. ``clock`` gives
    the time retention counts from.
    """

    name = "pruner"
    activity = "pruning finished jobs"

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
        super().__init__(engine, leadership, interval=interval, batch=batch)
        self.retention = checked_retention(retention)
        self._jobs = MaintenanceRepository()
        self._clock = clock

    async def run_once(self) -> int:
        """Prune every state to its retention; returns how many jobs were deleted."""
        now = self._clock()
        total = 0
        for state, keep in self.retention.items():
            total += await self.drain(functools.partial(self._prune_batch, state, now - keep))
        if total:
            self.log.info("pruned %d finished jobs", total)
        return total

    async def _prune_batch(self, state: JobState, before: datetime, limit: int) -> int:
        async with hot_connection(self._engine) as connection:
            return await self._jobs.prune_finished_before(connection, state, before, limit)


RETENTION_MAX = timedelta(days=365 * 1000)
"""The longest retention: longer would reach before the year 1, where dates end."""


def checked_retention(retention: Mapping[JobState, timedelta]) -> dict[JobState, timedelta]:
    """``retention`` as a new dict keyed by :class:`JobState` (a state's name is taken
    too), once it names finished states only, each with a ``timedelta`` from zero to
    :data:`RETENTION_MAX`; else a :class:`~chancy.errors.ConfigurationError`."""
    if not isinstance(retention, Mapping):
        raise ConfigurationError(
            f"retention is a {type(retention).__name__}; give a mapping of finished states to "
            "timedeltas, such as {JobState.SUCCEEDED: timedelta(days=1)}"
        )
    if unknown := sorted(str(state) for state in set(retention) - FINISHED_STATES):
        finished = sorted(str(state) for state in FINISHED_STATES)
        raise ConfigurationError(
            f"retention is for finished states only, not {unknown}; give it some of "
            f"{finished} (a state left out is kept forever)"
        )
    for state, keep in retention.items():
        if not isinstance(keep, timedelta) or not timedelta(0) <= keep <= RETENTION_MAX:
            raise ConfigurationError(
                f"retention for {state!s} is {keep!r}; give a timedelta from zero to 1,000 "
                "years, such as timedelta(days=7) (leave a state out to keep it forever)"
            )
    return {JobState(state): keep for state, keep in retention.items()}
