"""The shape every once-per-cluster service shares: a tick, and the loop that runs it.

A service's :meth:`~LeaderService.run_once` is one tick: it does everything that is due
now and returns how many rows it handled, so a test can drive it one tick at a time.
:meth:`~LeaderService.run` is the loop a worker starts: every ``interval`` seconds, while
this worker leads, one tick; a failed tick is logged and tried again at the next interval.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.services.leader import Leadership

__all__ = ["LeaderService"]


class LeaderService(abc.ABC):
    """A service run by the elected leader only: every ``interval`` seconds, one tick.

    ``batch``: the most rows one statement handles; a tick that gets a full batch back
    runs the next at once (more may be waiting), until one comes back short (see
    :meth:`drain`). ``None`` for a service whose tick is a single step.
    Subclasses set :attr:`name` (their task and logger: ``chancy.<name>``) and
    :attr:`activity` (what a failed tick was doing, for its log line).
    """

    name: ClassVar[str]
    activity: ClassVar[str]

    def __init__(
        self,
        engine: AsyncEngine,
        leadership: Leadership,
        *,
        interval: float,
        batch: int | None = None,
    ) -> None:
        self._engine = engine
        self._leadership = leadership
        self.interval = interval
        self.batch = batch
        self.log = logging.getLogger(f"chancy.{self.name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} interval={self.interval} batch={self.batch}>"

    @abc.abstractmethod
    async def run_once(self) -> int:
        """One tick: handle everything due now; returns how many rows were handled."""

    async def run(self) -> None:
        """Every ``interval`` seconds, while this worker leads, one tick (until cancelled)."""
        while True:
            await asyncio.sleep(self.interval)
            if not self._leadership.is_leader:
                continue
            try:
                await self.run_once()
            except Exception as exc:
                self.log.warning("%s failed (%s)", self.activity, exc)

    async def drain(self, step: Callable[[int], Awaitable[int]]) -> int:
        """Await ``step(batch)`` (one statement of at most ``batch`` rows) again while it
        comes back full; returns how many rows all of them handled."""
        if self.batch is None:
            raise TypeError(f"{self.name} has no batch size, so nothing to drain")
        total = 0
        while True:
            handled = await step(self.batch)
            total += handled
            if handled < self.batch:
                return total
