"""Finding the database: DSN resolution, engines, and safe descriptions of servers.

The DSN is taken from, in order: the ``dsn`` given to chancy, ``CHANCY_DSN``, and last an
embedded PostgreSQL (see :mod:`chancy.embedded`). Plain ``postgresql://`` DSNs are run on
asyncpg. Nothing here ever puts a password into a log line or an error message: servers
are described by :func:`describe` (user, host, port and database only).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chancy.errors import ConfigurationError, DatabaseUnavailableError

__all__ = [
    "DSN_ENV",
    "check_reachable",
    "create_engine",
    "describe",
    "hot_connection",
    "resolve_url",
]

DSN_ENV = "CHANCY_DSN"
CONNECT_TIMEOUT_DEFAULT = 10.0

log = logging.getLogger("chancy")

_DRIVERS = {
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgresql+psycopg",
    "postgresql+psycopg2",
}


def resolve_url(dsn: str | URL | None = None) -> URL:
    """The asyncpg URL for ``dsn``, else ``CHANCY_DSN``, else the embedded server's."""
    if dsn is None:
        dsn = os.environ.get(DSN_ENV) or None
    if dsn is None:
        from chancy import embedded

        dsn = embedded.start()
    try:
        url = make_url(dsn)
    except ArgumentError as exc:
        raise ConfigurationError(
            "the DSN is not a database URL; use the form "
            "postgresql://user:password@host:5432/database"
        ) from exc
    if url.drivername not in _DRIVERS:
        raise ConfigurationError(
            f"chancy runs on PostgreSQL, not {url.drivername!r}; use a postgresql:// DSN"
        )
    return url.set(drivername="postgresql+asyncpg")


def describe(url: URL) -> str:
    """``user@host:port/database`` for messages: never the password."""
    query_host = url.query.get("host")
    host = url.host or (query_host if isinstance(query_host, str) else None) or "localhost"
    port = url.port or 5432
    user = f"{url.username}@" if url.username else ""
    return f"{user}{host}:{port}/{url.database or ''}"


def create_engine(url: URL, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` with chancy's defaults, overridable by ``options``."""
    connect_args = {"timeout": CONNECT_TIMEOUT_DEFAULT, **options.pop("connect_args", {})}
    options.setdefault("hide_parameters", True)
    engine = create_async_engine(url, connect_args=connect_args, **options)
    if not options.get("pool_pre_ping"):
        event.listen(engine.sync_engine.pool, "checkout", _closed_is_disconnected)
    return engine


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
    SQLAlchemy in between. It goes back to the pool afterwards (one the server closed
    meanwhile is discarded instead). On another driver, a SQLAlchemy connection in a
    transaction that commits when the block ends.
    """
    if engine.dialect.driver != "asyncpg":
        async with engine.begin() as connection:
            yield connection
        return
    pooled = await engine.raw_connection()
    driver = cast(asyncpg.Connection, pooled.driver_connection)
    try:
        yield driver
    except BaseException:
        if driver.is_closed():
            pooled.invalidate()
        raise
    finally:
        pooled.close()


async def check_reachable(engine: AsyncEngine) -> None:
    """Raise :class:`DatabaseUnavailableError` (naming host and port) if the server does not
    answer a trivial query."""
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, DBAPIError) as exc:
        reason = _reason(exc, engine.url)
        raise DatabaseUnavailableError(
            f"could not connect to PostgreSQL at {describe(engine.url)}: {reason}. Check that "
            f"the server is running and that the DSN (dsn=, engine= or {DSN_ENV}) is right"
        ) from None


def _reason(exc: BaseException, url: URL) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text
