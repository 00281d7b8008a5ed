"""Waking idle workers after a push commits, many commits to one NOTIFY.

A NOTIFY inside the push's transaction would make PostgreSQL take its database-wide
notification lock at the push's commit and hold it through the commit's WAL flush, so
concurrent pushers would commit one at a time. Instead, a push that chancy sees commit
tells a coalescer the queues in which it made jobs ready, and the coalescer sends the
``pushed`` events (:mod:`chancy.events`, the vocabulary workers already listen to) on a
connection of its own, in a transaction of its own, committed asynchronously:

- the first wake-up after a quiet spell is sent at once (an idle worker starts the job
  within a few milliseconds); while one is being sent, and for :data:`WINDOW_DEFAULT`
  seconds after it, the next are collected, then sent as one transaction, one event per
  queue however many pushes named it;
- a push in chancy's own transaction is announced after its commit; one in the
  application's ``Session`` or ``AsyncSession`` when that session's transaction commits
  (SQLAlchemy's ``after_commit`` event, :func:`wake_after_commit`), and never if it rolls
  back; one in the application's ``Connection`` or ``AsyncConnection``, whose commit
  chancy cannot see, by its own statement (delivered by PostgreSQL at the commit);
- a wake-up that fails (the connection is lost, the server is restarting) is logged and
  dropped, never raised to the pusher: the job waits for the workers' next poll
  (``polling_interval``), it is never stranded.

:class:`WakeUps` serves an asyncio :class:`~chancy.app.Chancy`; :class:`ThreadWakeUps`
the synchronous API (:mod:`chancy.sync`), one per engine, sending from a short-lived
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import Pool

from chancy.database.engine import hot_connection
from chancy.events import EVENTS_CHANNEL, EventKind
from chancy.models import JobRow as _JobRow
from chancy.repository.runner import Statement

if TYPE_CHECKING:
    from chancy.worker.held_connection import HeldConnection

__all__ = [
    "SEND_TIMEOUT_DEFAULT",
    "WINDOW_DEFAULT",
    "ThreadWakeUps",
    "WakeUps",
    "Waker",
    "on_engine",
    "thread_wake_ups",
    "wake_after_commit",
]

log = logging.getLogger("chancy.wakeups")

WINDOW_DEFAULT = 0.002
"""Seconds between two wake-up transactions of one coalescer: what arrives meanwhile is
sent together."""
SEND_TIMEOUT_DEFAULT = 5.0
"""Seconds a wake-up transaction may take before it is given up (and the jobs wait for
the workers' polling)."""

# Asynchronous commit: the notifications are an accelerator, and their transaction's
# WAL flush would otherwise be a commit's wait per wake-up. Local to the transaction:
# the connection goes back to the pool as it was.
_SEND = Statement(
    sa.text(
        f"SELECT count(pg_notify('{EVENTS_CHANNEL}', payload)) AS n, "
        "min(set_config('synchronous_commit', 'off', true)) AS sync "
        "FROM unnest(CAST(:p_payloads AS text[])) AS payload"
    ).bindparams(sa.bindparam("p_payloads", type_=ARRAY(sa.Text))),
    what="waking workers",
)
_PENDING = "chancy_wake_ups"


class Waker(Protocol):
    """What a push tells once its transaction committed."""

    def wake(self, queues: Collection[str]) -> None:
        """Wake the workers of ``queues``, soon; from any thread; never raises."""


def payloads(queues: Collection[str]) -> list[str]:
    """The ``pushed`` events for ``queues``, as the listener reads them."""
    return [_payload(queue) for queue in sorted(queues)]


@functools.lru_cache(maxsize=1024)
def _payload(queue: str) -> str:
    return json.dumps({"event": EventKind.PUSHED.value, "queue": queue})


class WakeUps:
    """The coalescer of one :class:`~chancy.app.Chancy`: sends on ``engine`` (on ``held``,
    a connection of its kept for the sends, if given: it is closed with the coalescer),
    from the event loop the first wake-up came from. ``sent`` counts the wake-up
    transactions sent, ``failed`` those that failed."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        window: float = WINDOW_DEFAULT,
        send_timeout: float = SEND_TIMEOUT_DEFAULT,
        held: HeldConnection | None = None,
    ) -> None:
        self._engine = engine
        self._held = held
        self.window = window
        self.send_timeout = send_timeout
        self._pending: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.sent = 0
        self.failed = 0

    def wake(self, queues: Collection[str]) -> None:
        """Wake ``queues``' workers soon; from any thread; never raises. Once
        closed (:meth:`close`), does nothing (a session committing after its ``Chancy`` closed
        must not open a connection on an engine that was disposed of, which nothing would
        ever close): the workers' polling finds the jobs."""
        if not queues or self._closed:
            return
        try:
            if self._loop is not None and self._loop.is_closed():
                # The loop of the last wake-ups ended (its task and its connections with
                # it): start afresh, on the pool.
                self._loop, self._task, self._held = None, None, None
                self._pending.clear()
            with contextlib.suppress(RuntimeError):
                running = asyncio.get_running_loop()
                if self._task is None or running is self._loop:
                    self._loop = running
                    self._add(queues)
                    return
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._add, frozenset(queues))
        except Exception:  # a wake-up only hurries a job up: the push has succeeded
            log.exception("could not schedule a wake-up; the workers' polling will find the jobs")

    def _add(self, queues: Collection[str]) -> None:
        if self._closed:
            return
        self._pending.update(queues)
        if self._task is None and self._loop is not None:
            self._task = self._loop.create_task(self._send_all(), name="chancy-wake-ups")

    async def _send_all(self) -> None:
        """Send what is pending, then what arrived meanwhile, at most one transaction per
        ``window``, until nothing is left."""
        loop = asyncio.get_running_loop()
        try:
            last = -self.window
            while True:
                wait = last + self.window - loop.time()
                if wait > 0:
                    # What arrives meanwhile goes with the next send (none: the task ends).
                    await asyncio.sleep(wait)
                if not self._pending:
                    break
                queues, self._pending = self._pending, set()
                last = loop.time()
                async with asyncio.timeout(self.send_timeout):
                    await self._send(queues)
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed += 1
            self._pending.clear()
            log.warning(
                "could not wake the workers (%s); they find the jobs at their next poll", exc
            )
        finally:
            self._task = None

    async def _send(self, queues: Collection[str]) -> None:
        # One transaction per send: on asyncpg the statement is its own; on another
        # driver, hot_connection's transaction commits when the block ends.
        parameters = {"p_payloads": payloads(queues)}
        if self._held is not None:
            await self._held.run(lambda connection: _SEND.rows(connection, parameters))
            return
        async with hot_connection(self._engine) as connection:
            await _SEND.rows(connection, parameters)

    async def flush(self, timeout: float = 1.0) -> None:
        """Wait (up to ``timeout`` seconds) for the pending wake-ups to be sent."""
        task = self._task
        if task is not None and self._loop is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout)

    async def close(self) -> None:
        """Send what is pending (briefly), then stop; later wake-ups are dropped."""
        self._closed = True
        await self.flush()
        task, self._task = self._task, None
        if task is not None and self._loop is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._pending.clear()
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):  # another loop's (see wake)
                await held.close()


class ThreadWakeUps:
    """The coalescer of a synchronous engine: a thread started by the first wake-up,
    sending as :class:`WakeUps` does on a connection of the engine's pool, and ending
    (giving it back) when nothing is left."""

    def __init__(
        self,
        engine: Engine,
        *,
        window: float = WINDOW_DEFAULT,
        send_timeout: float = SEND_TIMEOUT_DEFAULT,
    ) -> None:
        self._engine = engine
        self.window = window
        self.send_timeout = send_timeout
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self.sent = 0
        self.failed = 0

    def wake(self, queues: Collection[str]) -> None:
        """Wake ``queues``' workers soon; from any thread; never raises."""
        if not queues:
            return
        try:
            with self._lock:
                self._pending.update(queues)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._send_all,
                        args=(self._engine.pool,),
                        name="chancy-wake-ups",
                        daemon=True,
                    )
                    self._thread.start()
                    self._threads = [t for t in self._threads if t.is_alive()]
                    self._threads.append(self._thread)
        except Exception:
            log.exception("could not schedule a wake-up; the workers' polling will find the jobs")

    def _take(self) -> set[str]:
        """The pending queues; when there are none, the thread ends (under the lock, so
        a wake-up arriving now starts another)."""
        with self._lock:
            queues, self._pending = self._pending, set()
            if not queues:
                self._thread = None
            return queues

    def _send_all(self, pool: Pool) -> None:
        """Send until nothing is left, on a connection of ``pool``, the engine's pool when
        the wake-up came. Returned to it after, so a burst of commits costs the
        application no connection (a new one per burst was a reconnection per quiet
        commit); unless the engine was disposed of meanwhile (right after a commit, say):
        then it is closed for good, not kept open by a pool no one disposes of again."""
        try:
            with self._engine.connect() as connection:
                try:
                    self._send_pending(connection)
                finally:
                    if self._engine.pool is not pool:
                        connection.detach()  # checked out of the new pool: close it
            if self._engine.pool is not pool:
                pool.dispose()  # disposed of as it was given back: close it there
        except Exception as exc:
            self.failed += 1
            log.warning(
                "could not wake the workers (%s); they find the jobs at their next poll", exc
            )
            with self._lock:
                self._pending.clear()
                self._thread = None

    def _send_pending(self, connection: Connection) -> None:
        """Send what is pending, then collect for a window and send again, until a
        window passes with nothing new (then the thread ends)."""
        while queues := self._take():
            _SEND.rows_sync(connection, {"p_payloads": payloads(queues)})
            connection.commit()
            self.sent += 1
            # What arrives meanwhile goes with the next send (none: the thread ends).
            time.sleep(self.window)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads sending wake-ups (for tests and shutdown): once they end,
        their connections are back in the engine's pool."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


_THREAD_WAKE_UPS: weakref.WeakKeyDictionary[Engine, ThreadWakeUps] = weakref.WeakKeyDictionary()
_THREAD_WAKE_UPS_LOCK = threading.Lock()


def thread_wake_ups(engine: Engine) -> ThreadWakeUps:
    """The coalescer of the synchronous ``engine`` (one per engine)."""
    with _THREAD_WAKE_UPS_LOCK:
        found = _THREAD_WAKE_UPS.get(engine)
        if found is None:
            found = _THREAD_WAKE_UPS[engine] = ThreadWakeUps(engine)
        return found


def on_engine(session: Session) -> bool:
    """Whether ``session`` runs chancy's tables on an engine (its own transactions, whose
    commit it sees) rather than on a connection of the application's, whose transaction
    it may only join."""
    with contextlib.suppress(Exception):
        return isinstance(session.get_bind(_JobRow), Engine)
    return False


def wake_after_commit(session: Session, waker: Waker, queues: Collection[str]) -> None:
    """Have ``waker`` wake ``queues`` when ``session``'s transaction commits; forget them
    if it rolls back. The session's hooks are registered once, on first use."""
    pending: dict[Waker, set[str]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_transaction_end", _after_transaction_end)
    pending.setdefault(waker, set()).update(queues)


def _after_commit(session: Session) -> None:
    # Also called when a savepoint is released: only the outermost commit counts.
    if session.in_nested_transaction():
        return
    pending: dict[Waker, set[str]] = session.info.get(_PENDING, {})
    woken = list(pending.items())
    pending.clear()
    for waker, queues in woken:
        waker.wake(queues)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without committing (a commit sent its wake-ups
    # already): what it pushed never existed.
    if transaction.parent is None:
        pending: dict[Any, set[str]] = session.info.get(_PENDING, {})
        pending.clear()
