"""Leader election: a lease row with a term, renewed by the leader, taken over when it
expires. Only the leader runs the once-per-cluster services."""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.repository import LeaderRepository

__all__ = ["LEADER_TTL_DEFAULT", "Leadership"]

log = logging.getLogger("chancy.leader")

LEADER_TTL_DEFAULT = 10.0


class Leadership:
    """Tries to become leader, and renews while it is, every ``ttl / 3`` seconds.

    A leader that dies is replaced within ``ttl`` seconds (plus one renewal period); one
    that stops cleanly resigns, and another worker takes over at its next try.

    A worker renews it from a thread of its own (see :mod:`chancy.worker.lease_keeper`),
    so :attr:`term` and :attr:`is_leader` may be read from any thread.
    """

    def __init__(self, engine: AsyncEngine, worker_id: str, *, ttl: float = LEADER_TTL_DEFAULT):
        self._engine = engine
        self._leaders = LeaderRepository()
        self.worker_id = worker_id
        self.ttl = ttl
        self._lock = threading.Lock()
        self._term: int | None = None

    @property
    def term(self) -> int | None:
        """The term this worker leads in; None while it does not lead."""
        with self._lock:
            return self._term

    @term.setter
    def term(self, term: int | None) -> None:
        with self._lock:
            self._term = term

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
        with self._lock:
            before, self._term = self._term, term
        if term != before:
            if term is not None:
                log.info("worker %s is the leader (term %d)", self.worker_id, term)
            else:
                log.info("worker %s is no longer the leader", self.worker_id)
        return term is not None

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.ttl / 3)

    async def resign(self) -> None:
        with self._lock:
            before, self._term = self._term, None
        if before is None:
            return
        try:
            async with self._engine.begin() as connection:
                await self._leaders.resign(connection, self.worker_id)
        except Exception as exc:
            log.warning("could not resign leadership (%s); it expires in %.0f s", exc, self.ttl)
