"""One connection a worker keeps for its hot path, instead of a pool checkout per batch
(a :class:`~chancy.app.Chancy` keeps one so too, for its grouped pushes and its wake-ups).

A worker's producers claim, and its completer writes outcomes, many times a second; a
checkout from SQLAlchemy's pool (and its return) for each of those statements costs
more Python than the statement itself. A :class:`HeldConnection` checks one connection
out when it is first used and keeps it, lending it to one statement at a time (each
its own transaction, as on :func:`~chancy.database.engine.hot_connection`).

A held connection that died (the server restarted or ended it, or a statement was cut
off mid-way) is discarded, and the next use checks out a new one; a statement that
never left this process because the connection was already dead is sent again at once
on the new one (:func:`~chancy.database.engine.never_sent`). Any other failure is
raised to the caller, whose write is retried (the completer keeps its outcomes until
one is written: none is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from chancy.database.engine import answered_by_server, hot_connection, retry_once
from chancy.repository.runner import HotExecutable

__all__ = ["HeldConnection"]

T = TypeVar("T")


class HeldConnection:
    """A connection of ``engine``'s pool, kept between statements until :meth:`close`.

    :meth:`run` runs one action on it (the others wait their turn). On a driver other
    than asyncpg nothing is held: each action runs on
    :func:`~chancy.database.engine.hot_connection`.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._held: Any = None  # SQLAlchemy's pooled connection, while held
        self._turn = asyncio.Lock()
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether an action runs on the connection now (the next would wait its turn)."""
        return self._turn.locked()

    async def run(self, action: Callable[[HotExecutable], Awaitable[T]]) -> T:
        """``action`` on the held connection, sent again on a new one if the held one
        turned out dead before anything was sent."""
        return await retry_once(self._lent, action)

    @contextlib.asynccontextmanager
    async def _lent(self) -> AsyncIterator[HotExecutable]:
        if self._engine.dialect.driver != "asyncpg":
            async with hot_connection(self._engine) as connection:
                yield connection
            return
        async with self._turn:
            driver = await self._driver()
            try:
                yield driver
            except BaseException as exc:
                if driver.is_closed() or not answered_by_server(exc):
                    await self._discard()
                raise

    async def _driver(self) -> asyncpg.Connection:
        held = self._held
        if held is not None and cast(asyncpg.Connection, held.driver_connection).is_closed():
            await self._discard()
            held = None
        if held is None:
            if self._closed:
                raise RuntimeError("the worker's held connection is closed")
            held = self._held = await self._engine.raw_connection()
        return cast(asyncpg.Connection, held.driver_connection)

    async def _discard(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            await greenlet_spawn(held.invalidate)
            await greenlet_spawn(held.close)

    async def close(self) -> None:
        """Give the connection back to the pool (after the statement under way, if any)."""
        async with self._turn:
            self._closed = True
            held, self._held = self._held, None
            if held is not None:
                await greenlet_spawn(held.close)
