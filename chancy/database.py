"""Finding the database: DSN resolution, engines, and safe descriptions of servers.

The DSN is taken from, in order: the ``dsn`` given to chancy, ``CHANCY_DSN``, and last an
embedded PostgreSQL (see :mod:`chancy.embedded`). Plain ``postgresql://`` DSNs are run on
asyncpg. Nothing here ever puts a password into a log line or an error message: servers
are described by :func:`describe` (user, host, port and database only), and a driver's
error text is shown with every password chancy knows of masked.

Timeouts (:class:`Timeouts`): the engines chancy creates give every connection a
``lock_timeout`` and a ``statement_timeout`` (server settings sent when connecting), so
no statement of chancy's waits forever on a lock or runs forever. A push inside the
application's own transaction sets them with ``set_config(..., true)`` (``SET LOCAL``)
around chancy's statements and puts the application's values back right after
(:func:`local_timeouts`): the rest of its transaction, and its session, keep its own
settings. An engine the application passes in (``engine=``) is never changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy.errors import (
    ChancyError,
    ConfigurationError,
    DatabaseUnavailableError,
    LockTimeoutError,
    PermissionDeniedError,
    StatementTimeoutError,
)
from chancy.models import JobRow

__all__ = [
    "DSN_ENV",
    "GRANTS_HINT",
    "LOCK_TIMEOUT_DEFAULT",
    "STATEMENT_TIMEOUT_DEFAULT",
    "Timeouts",
    "check_reachable",
    "create_engine",
    "database_errors",
    "describe",
    "hot_connection",
    "local_timeouts",
    "local_timeouts_sync",
    "mask_secrets",
    "never_sent",
    "resolve_url",
    "secrets_of",
]

DSN_ENV = "CHANCY_DSN"
CONNECT_TIMEOUT_DEFAULT = 10.0
LOCK_TIMEOUT_DEFAULT = 5.0
STATEMENT_TIMEOUT_DEFAULT = 30.0

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


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """The ``lock_timeout`` and ``statement_timeout`` of chancy's statements, in seconds
    (default 5 s and 30 s). None: chancy sets none, and the server's (or the role's)
    setting applies."""

    lock: float | None = LOCK_TIMEOUT_DEFAULT
    statement: float | None = STATEMENT_TIMEOUT_DEFAULT

    def __post_init__(self) -> None:
        for setting, value in (("lock_timeout", self.lock), ("statement_timeout", self.statement)):
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigurationError(
                    f"{setting}={value!r}: use a positive number of seconds, or None for no "
                    "limit set by chancy"
                )

    def settings(self) -> dict[str, str]:
        """The PostgreSQL settings (in milliseconds) of the timeouts that are set."""
        settings = {}
        if self.lock is not None:
            settings["lock_timeout"] = _milliseconds(self.lock)
        if self.statement is not None:
            settings["statement_timeout"] = _milliseconds(self.statement)
        return settings


def _milliseconds(seconds: float) -> str:
    # At least 1 ms: 0 means "no limit" to PostgreSQL.
    return str(max(1, math.ceil(seconds * 1000)))


def create_engine(url: URL, *, timeouts: Timeouts | None = None, **options: Any) -> AsyncEngine:
    """An async engine for ``url`` with chancy's defaults, overridable by ``options``.

    ``timeouts`` become server settings of every connection (``server_settings`` given in
    ``connect_args`` take precedence)."""
    connect_args = {"timeout": CONNECT_TIMEOUT_DEFAULT, **options.pop("connect_args", {})}
    if timeouts is not None and timeouts.settings():
        given = connect_args.get("server_settings") or {}
        connect_args["server_settings"] = {**timeouts.settings(), **given}
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
        if driver.is_closed() or not _answered_by_server(exc):
            pooled.invalidate()
        raise
    finally:
        pooled.close()


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


def _answered_by_server(exc: BaseException) -> bool:
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
        reason = mask_secrets(_reason(exc), {*secrets_of(engine.url), *secrets})
        raise DatabaseUnavailableError(
            f"could not connect to PostgreSQL at {describe(engine.url)}: {reason}. Check that "
            f"the server is running and that the DSN (dsn=, engine= or {DSN_ENV}) is right"
        ) from None


def _reason(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    # SQLAlchemy's asyncpg adapter prefixes the driver's class: keep the server's words.
    return re.sub(r"^<class '[\w.]+'>: ", "", text)


def secrets_of(url: URL, connect_args: Mapping[str, Any] | None = None) -> set[str]:
    """The passwords in ``url`` (also as ``?password=``) and in ``connect_args``."""
    found = {url.password, url.query.get("password"), (connect_args or {}).get("password")}
    return {str(secret) for secret in found if isinstance(secret, str) and secret}


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` (as is, and URL-quoted) replaced by ``***``."""
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote(secret)}:
            text = text.replace(form, "***")
    return text


_SAVE_AND_SET_TIMEOUTS = sa.text(
    # The MATERIALIZED CTE reads the current values before set_config changes them.
    "WITH saved AS MATERIALIZED (SELECT current_setting('lock_timeout') AS lock_timeout, "
    "current_setting('statement_timeout') AS statement_timeout) "
    "SELECT saved.lock_timeout, saved.statement_timeout, "
    "set_config('lock_timeout', coalesce(:lock_timeout, saved.lock_timeout), true) AS lock_set, "
    "set_config('statement_timeout', coalesce(:statement_timeout, saved.statement_timeout), "
    "true) AS statement_set FROM saved"
)
_RESTORE_TIMEOUTS = sa.text(
    "SELECT set_config('lock_timeout', :lock_timeout, true) AS lock_set, "
    "set_config('statement_timeout', :statement_timeout, true) AS statement_set"
)
# A session may bind tables to engines of their own: run these where the jobs table is.
_JOBS_BIND = {"mapper": JobRow}


@contextlib.asynccontextmanager
async def local_timeouts(
    transaction: AsyncSession | AsyncConnection, timeouts: Timeouts
) -> AsyncIterator[None]:
    """Run the block's statements with ``timeouts``, inside the caller's transaction.

    The values are set for the transaction only (``set_config(..., true)``, as ``SET
    LOCAL`` does) and the caller's values are put back when the block ends, so its later
    statements, and its session after the transaction, keep its own settings. A block
    that raises restores nothing: its statement failed, so the transaction is aborted and
    must be rolled back, which ends the local values. Costs two round trips; none when
    ``timeouts`` sets nothing. Without a transaction block (an AUTOCOMMIT connection)
    local values end with each statement, so nothing applies.
    """
    if not timeouts.settings():
        yield
        return
    saved = await _execute(transaction, _SAVE_AND_SET_TIMEOUTS, _timeout_parameters(timeouts))
    yield
    await _execute(transaction, _RESTORE_TIMEOUTS, saved)


@contextlib.contextmanager
def local_timeouts_sync(transaction: Session | Connection, timeouts: Timeouts) -> Iterator[None]:
    """:func:`local_timeouts` in a synchronous ``Session`` or ``Connection``."""
    if not timeouts.settings():
        yield
        return
    parameters = _timeout_parameters(timeouts)
    if isinstance(transaction, Session):
        result = transaction.execute(_SAVE_AND_SET_TIMEOUTS, parameters, bind_arguments=_JOBS_BIND)
    else:
        result = transaction.execute(_SAVE_AND_SET_TIMEOUTS, parameters)
    saved = dict(result.mappings().one())
    yield
    if isinstance(transaction, Session):
        transaction.execute(_RESTORE_TIMEOUTS, _saved(saved), bind_arguments=_JOBS_BIND)
    else:
        transaction.execute(_RESTORE_TIMEOUTS, _saved(saved))


async def _execute(
    transaction: AsyncSession | AsyncConnection, statement: sa.TextClause, parameters: Any
) -> dict[str, str]:
    if isinstance(transaction, AsyncSession):
        result = await transaction.execute(statement, parameters, bind_arguments=_JOBS_BIND)
    else:
        result = await transaction.execute(statement, parameters)
    row = result.mappings().first()
    return _saved(dict(row)) if row is not None else {}


def _timeout_parameters(timeouts: Timeouts) -> dict[str, str | None]:
    settings = timeouts.settings()
    return {name: settings.get(name) for name in ("lock_timeout", "statement_timeout")}


def _saved(row: Mapping[str, Any]) -> dict[str, str]:
    return {name: row[name] for name in ("lock_timeout", "statement_timeout") if name in row}


GRANTS_HINT = (
    "Give the roles that push and run jobs the grants printed by `chancy grants --role "
    "NAME` (applied by the owner of chancy's tables)"
)


@contextlib.contextmanager
def database_errors(
    what: str, timeouts: Timeouts | None, *, denied_hint: str = GRANTS_HINT
) -> Iterator[None]:
    """Turn the database errors a user can act on into chancy errors that say what to do:
    a lock or statement timeout (:class:`LockTimeoutError`, :class:`StatementTimeoutError`,
    naming the limit when ``timeouts`` says what chancy set) and a missing privilege
    (:class:`PermissionDeniedError`, ending with ``denied_hint``). ``what`` names the
    operation, as "the push"."""
    try:
        yield
    except DBAPIError as exc:
        error = _chancy_error(exc, what, timeouts, denied_hint)
        if error is None:
            raise
        raise error from exc


def _chancy_error(
    exc: DBAPIError, what: str, timeouts: Timeouts | None, denied_hint: str
) -> ChancyError | None:
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    reason = _reason(exc)
    if sqlstate == "55P03" and "lock timeout" in reason:
        limit = _limit("lock_timeout", timeouts.lock if timeouts else None)
        return LockTimeoutError(
            f"{what} waited longer than {limit} for a lock that another transaction holds, "
            "and was cancelled. Let that transaction finish (pg_locks and pg_stat_activity "
            "show it), or raise the limit with Chancy(lock_timeout=seconds)"
        )
    if sqlstate == "57014" and "statement timeout" in reason:
        limit = _limit("statement_timeout", timeouts.statement if timeouts else None)
        return StatementTimeoutError(
            f"{what} ran longer than {limit}, and was cancelled; if it may take that long, "
            "raise the limit with Chancy(statement_timeout=seconds)"
        )
    if sqlstate == "42501":
        return PermissionDeniedError(
            f"{what} was refused by PostgreSQL ({reason}): the database role lacks a "
            f"privilege. {denied_hint}"
        )
    return None


def _limit(setting: str, seconds: float | None) -> str:
    if seconds is None:
        return f"its connection's {setting}"
    return f"{setting} ({seconds:g} s)"
