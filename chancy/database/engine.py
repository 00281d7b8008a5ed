"""Engines and their connections.

:func:`create_engine` makes the engines chancy owns: a connect timeout of
:data:`CONNECT_TIMEOUT_DEFAULT` seconds, parameters hidden from error messages, chancy's
timeouts as server settings of every connection, and a check at checkout that replaces a
connection the server closed, without a round trip (unlike ``pool_pre_ping``).
:func:`hot_connection` lends the bare asyncpg connection the hot path runs on;
:func:`can_spare_connection` says whether one may be kept checked out for it.
:func:`retry_once` runs an action once more on another connection when the first turned
out dead: always when nothing had been sent (:func:`never_sent`: the server ended the
connection while it sat in the pool), and for an action that is safe to repeat (a read)
also when the connection died under it.
:func:`check_reachable` says, without a password, which server did not answer.
:func:`twin_engine` connects as an engine does, with a pool of its own, for another
thread's event loop.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from chancy.database.dsn import (
    DSN_ENV,
    LIBPQ_OPTIONS,
    describe,
    mask_secrets,
    reason_of,
    secrets_of,
)
from chancy.database.timeouts import Timeouts
from chancy.errors import DatabaseUnavailableError

__all__ = [
    "CONNECT_TIMEOUT_DEFAULT",
    "answered_by_server",
    "can_spare_connection",
    "check_reachable",
    "create_engine",
    "hot_connection",
    "never_sent",
    "retry_once",
    "twin_engine",
]

CONNECT_TIMEOUT_DEFAULT = 10.0

log = logging.getLogger("chancy")

Connected = TypeVar("Connected")
T = TypeVar("T")


def create_engine(url: URL, *, timeouts: Timeouts | None = None, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` with chancy's defaults, overridable by ``options``.

    ``timeouts`` become server settings of every connection (``server_settings`` given in
    ``connect_args`` take precedence). The URL's libpq options (``sslmode``,
    ``sslrootcert``, ``application_name``, ...: :data:`~chancy.database.dsn.LIBPQ_OPTIONS`)
    reach asyncpg as a DSN string, the one way it takes them; ``connect_timeout`` is the
    connect timeout unless ``connect_args`` give one."""
    timeout = url.query.get("connect_timeout")
    connect_args = {
        "timeout": CONNECT_TIMEOUT_DEFAULT if timeout is None else float(str(timeout)),
        **options.pop("connect_args", {}),
    }
    if timeouts is not None and timeouts.settings():
        given = connect_args.get("server_settings") or {}
        connect_args["server_settings"] = {**timeouts.settings(), **given}
    options.setdefault("hide_parameters", True)
    engine = create_async_engine(url, connect_args=connect_args, **options)
    if not options.get("pool_pre_ping"):
        event.listen(engine.sync_engine.pool, "checkout", _closed_is_disconnected)
    if engine.dialect.driver == "asyncpg" and LIBPQ_OPTIONS & set(url.query):
        event.listen(engine.sync_engine, "do_connect", _libpq_options_as_dsn)
    return engine


def twin_engine(engine: AsyncEngine) -> AsyncEngine:
    """An engine that connects exactly as ``engine`` does (its URL, ``connect_args``,
    server settings such as chancy's timeouts, and connect hooks: its pool's creator and
    events) with a pool of its own, for use on another thread's event loop: an asyncio
    connection belongs to the loop that opened it, so ``engine``'s cannot serve there.
    Dispose of it on that loop. It shares ``engine``'s dialect, already initialised, so
    its connections are set up as ``engine``'s are, without a query more."""
    sync = engine.sync_engine
    twin = Engine(sync.pool.recreate(), sync.dialect, sync.url, hide_parameters=True)
    return AsyncEngine(twin)


def _libpq_options_as_dsn(_dialect: Any, _record: Any, _args: Any, kwargs: dict[str, Any]) -> None:
    """Move the libpq options SQLAlchemy put among asyncpg's keyword arguments (which
    would refuse them) into the ``dsn`` argument, where asyncpg reads them; the host,
    user and the other keywords still take precedence over the DSN string."""
    moved = {key: kwargs.pop(key) for key in LIBPQ_OPTIONS & set(kwargs)}
    moved.pop("connect_timeout", None)  # create_engine made it the timeout
    if moved and "dsn" not in kwargs:
        kwargs["dsn"] = "postgresql://?" + urllib.parse.urlencode(moved)


def _closed_is_disconnected(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """The pool's check before handing out a connection, without a round trip (unlike
    ``pool_pre_ping``): a connection the server closed (a restart, an idle timeout, a
    terminated backend) was seen closing by the event loop, and is replaced by a new one."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection")


@contextlib.asynccontextmanager
async def hot_connection(
    engine: AsyncEngine,
) -> AsyncIterator[asyncpg.Connection | AsyncConnection]:
    """A connection for the statements of the hot path (a push, a claim, a batch of
    outcomes), each of which is its own transaction.

    On asyncpg, the bare driver connection under one of ``engine``'s pooled connections:
    each statement is one round trip, with no BEGIN and COMMIT of its own and no
    SQLAlchemy in between. It goes back to the pool afterwards, unless the block failed
    in a way that may leave it unusable (closed by the server, or cut off mid-statement
    by a cancellation or a timeout): then it is discarded. An error the server raised
    for a statement (a constraint, a lock timeout) leaves it usable. On another driver, a
    SQLAlchemy connection in a transaction that commits when the block ends.
    """
    if engine.dialect.driver != "asyncpg":
        async with engine.begin() as connection:
            yield connection
        return
    pooled = await engine.raw_connection()
    driver = cast(asyncpg.Connection, pooled.driver_connection)
    try:
        yield driver
    except BaseException as exc:
        if driver.is_closed() or not answered_by_server(exc):
            await greenlet_spawn(pooled.invalidate)
        raise
    finally:
        # Given back to a full pool, a connection is closed, which awaits asyncpg:
        # SQLAlchemy can only do that inside greenlet_spawn.
        await greenlet_spawn(pooled.close)


def can_spare_connection(engine: AsyncEngine, *, kept: int = 0) -> bool:
    """Whether chancy may keep one more of ``engine``'s connections checked out for its
    hot path, ``kept`` being kept already: on asyncpg, from a queue pool that keeps at
    least one more than that (a ``NullPool`` keeps none; the application always keeps
    one of its pool's)."""
    pool = engine.sync_engine.pool
    return (
        engine.dialect.driver == "asyncpg"
        and isinstance(pool, QueuePool)
        and pool.size() >= kept + 2
    )


def lends_at_once(engine: AsyncEngine) -> bool:
    """Whether ``engine``'s pool would hand out a connection now, without waiting for one
    to be given back (any pool but a ``QueuePool`` at its limit)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return True
    limit = pool._max_overflow
    return pool.checkedin() > 0 or limit < 0 or pool.overflow() < limit


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) says the statement never left this process because
    its pooled connection was already dead: the server ended it while it sat idle in the
    pool, and the event loop had not yet seen it close. Running the statement again on
    another connection is then safe, whatever the statement."""
    seen: BaseException | None = exc
    while seen is not None:
        for error in (seen, getattr(seen, "orig", None)):
            if isinstance(error, asyncpg.exceptions.InternalClientError):
                return True  # the protocol refused to start the statement
            if isinstance(error, asyncpg.InterfaceError) and "connection is closed" in str(error):
                return True
        seen = seen.__cause__
    return False


async def retry_once(
    connect: Callable[[], AbstractAsyncContextManager[Connected]],
    action: Callable[[Connected], Awaitable[T]],
    *,
    repeatable: bool = False,
) -> T:
    """``action`` on a connection from ``connect``; run once more, on another connection,
    if the first was dead before anything was sent (:func:`never_sent`: the server ended
    it while it sat in the pool). An action that is ``repeatable`` (a read, an upsert, a
    transaction that may run twice) also runs again if its connection died under it
    (SQLAlchemy invalidated it, or :func:`lost_mid_statement` says so); one that is not
    (a push) and may have reached the server is never run twice; running one again is
    logged (INFO). A second failure is raised."""
    try:
        async with connect() as connection:
            return await action(connection)
    except DBAPIError as exc:
        died = exc.connection_invalidated or lost_mid_statement(exc)
        if not (never_sent(exc) or (repeatable and died)):
            raise
        if not repeatable:
            # Sent again only on never_sent's word: leave a trace of it.
            log.info("a pooled connection had been closed by the server; using another")
    async with connect() as connection:
        return await action(connection)


def lost_mid_statement(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) says the connection died under the statement: the
    server ended the session or the network dropped it while the statement ran (on the
    hot path's bare asyncpg connection, SQLAlchemy does not mark such an error as an
    invalidated connection). Whether the statement took effect is unknown."""
    seen: BaseException | None = exc
    while seen is not None:
        for error in (seen, getattr(seen, "orig", None)):
            if isinstance(error, (asyncpg.PostgresConnectionError, ConnectionError)):
                return True
            if isinstance(error, asyncpg.InterfaceError) and "connection" in str(error):
                return True
        seen = seen.__cause__
    return False


def answered_by_server(exc: BaseException) -> bool:
    """Whether ``exc`` is (or was caused by) an error PostgreSQL sent back for a statement,
    after which the connection is idle and usable again."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.PostgresError):
            return True
        orig = getattr(seen, "orig", None)
        if isinstance(orig, asyncpg.PostgresError):
            return True
        seen = seen.__cause__
    return False


async def check_reachable(engine: AsyncEngine, *, secrets: Iterable[str] = ()) -> None:
    """Raise :class:`DatabaseUnavailableError` (naming host and port) if the server does not
    answer a trivial query. The driver's reason is shown with the URL's password and
    ``secrets`` (say, a password given in ``connect_args``) masked."""
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, DBAPIError) as exc:
        reason = mask_secrets(reason_of(exc), {*secrets_of(engine.url), *secrets})
        raise DatabaseUnavailableError(
            f"could not connect to PostgreSQL at {describe(engine.url)}: {reason}. Check that "
            f"the server is running and that the DSN (dsn=, engine= or {DSN_ENV}) is right"
        ) from None
