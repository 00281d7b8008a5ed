"""Leader election: a lease row with a term, renewed by the leader, taken over when it
expires. Only the leader runs the once-per-cluster services."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import LeaderRepository

__all__ = ["LEADER_TTL_DEFAULT", "Leadership"]

log = logging.getLogger("chancy.leader")

LEADER_TTL_DEFAULT = 10.0


class Leadership:
    """Tries to become leader, and renews while it is, every ``ttl / 3`` seconds.

    A leader that dies is replaced within ``ttl`` seconds (plus one renewal period); one
    that stops cleanly resigns, and another worker takes over at its next try.
    """

    def __init__(self, engine: AsyncEngine, worker_id: str, *, ttl: float = LEADER_TTL_DEFAULT):
        self._engine = engine
        self._leaders = LeaderRepository()
        self.worker_id = worker_id
        self.ttl = ttl
        self.term: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.term is not None

    async def run_once(self) -> bool:
        """Take or renew the lease; returns whether this worker leads now."""
        try:
            async with self._engine.begin() as connection:
                term = await self._leaders.elect_or_renew(connection, self.worker_id, self.ttl)
        except Exception as exc:
            log.warning("leader election failed (%s)", exc)
            term = None
        if term != self.term:
            if term is not None:
                log.info("worker %s is the leader (term %d)", self.worker_id, term)
            else:
                log.info("worker %s is no longer the leader", self.worker_id)
        self.term = term
        return term is not None

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.ttl / 3)

    async def resign(self) -> None:
        if self.term is None:
            return
        self.term = None
        try:
            async with self._engine.begin() as connection:
                await self._leaders.resign(connection, self.worker_id)
        except Exception as exc:
            log.warning("could not resign leadership (%s); it expires in %.0f s", exc, self.ttl)
