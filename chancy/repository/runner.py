"""The statement runner: every statement of the repository runs through :class:`Statement`,
which also turns the database errors a user can act on into chancy's errors, once.

A statement is built with SQLAlchemy Core once, at import, and compiled once more for
bare asyncpg (its text and the order of its parameters), so the hot path runs it with no
SQLAlchemy in between. It runs on:

- an ``AsyncConnection`` or ``AsyncSession``: the caller's transaction (nothing here
  commits);
- a bare ``asyncpg.Connection`` (:func:`chancy.database.hot_connection`): each statement
  is its own transaction, one round trip;
- a synchronous ``Connection`` or ``Session`` (any driver), for sync apps.

JSON columns arrive decoded either way (SQLAlchemy's asyncpg dialect gives each pooled
connection a codec for them).

Errors (:func:`translate`): a missing table or column becomes :class:`SchemaError` (run
the migrations); a lock or statement timeout becomes :class:`LockTimeoutError` or
:class:`StatementTimeoutError`, naming the limit when chancy set it; a missing privilege
becomes :class:`PermissionDeniedError` with the grants to give. Anything else is raised
as SQLAlchemy raised it (a ``DBAPIError``), so callers can still tell a dead connection
from a refused statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from chancy.database.dsn import reason_of
from chancy.database.timeouts import Timeouts
from chancy.errors import (
    ChancyError,
    LockTimeoutError,
    PermissionDeniedError,
    SchemaError,
    StatementTimeoutError,
)

__all__ = [
    "GRANTS_HINT",
    "NOT_NULL_VIOLATION",
    "UNIQUE_VIOLATION",
    "Executable",
    "HotExecutable",
    "Statement",
    "SyncExecutable",
    "sqlstate_of",
    "translate",
    "translated",
]

Executable = AsyncConnection | AsyncSession
"""Where a statement runs: the caller's SQLAlchemy connection or session, in its transaction."""
HotExecutable = Executable | asyncpg.Connection
"""Also the bare asyncpg connection of :func:`chancy.database.hot_connection`, where
each statement is its own transaction (one round trip)."""
SyncExecutable = Connection | Session
"""A synchronous connection or session of the application's, in its transaction."""

GRANTS_HINT = (
    "Give the roles that push and run jobs the grants printed by `chancy grants --role "
    "NAME` (applied by the owner of chancy's tables)"
)

_UNDEFINED_TABLE = "42P01"
_UNDEFINED_COLUMN = "42703"
_LOCK_NOT_AVAILABLE = "55P03"
_QUERY_CANCELED = "57014"
_INSUFFICIENT_PRIVILEGE = "42501"
NOT_NULL_VIOLATION = "23502"
UNIQUE_VIOLATION = "23505"

_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)


class Statement:
    """One statement, compiled once, run on any connection; ``what`` names the operation
    it belongs to in error messages ("the push", "reading the job")."""

    _DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

    def __init__(self, construct: sa.Executable, *, what: str) -> None:
        self.construct = construct
        self.what = what
        compiled = cast(
            SQLCompiler, cast(sa.ClauseElement, construct).compile(dialect=self._DIALECT)
        )
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        self._constants = dict(compiled.params)

    async def rows(
        self,
        conn: HotExecutable,
        parameters: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
    ) -> Sequence[Any]:
        """The rows of the statement, as mappings of column name to value. ``timeouts``:
        what chancy set on this connection, for the messages of timeout errors."""
        with translated(self.what, timeouts):
            if not isinstance(conn, asyncpg.Connection):
                return _rows_of(await conn.execute(self.construct, parameters))
            arguments = [parameters.get(name, self._constants.get(name)) for name in self._names]
            try:
                return await conn.fetch(self.sql, *arguments)
            except _DRIVER_ERRORS as exc:
                raise DBAPIError.instance(
                    self.sql, None, exc, Exception, hide_parameters=True
                ) from exc

    def rows_sync(
        self,
        conn: SyncExecutable,
        parameters: Mapping[str, Any],
        *,
        timeouts: Timeouts | None = None,
    ) -> Sequence[Any]:
        """:meth:`rows` on a synchronous ``Connection`` or ``Session``."""
        with translated(self.what, timeouts):
            return _rows_of(conn.execute(self.construct, parameters))


def _rows_of(result: sa.Result[Any]) -> Sequence[Any]:
    """The rows of a SQLAlchemy result as mappings; none for a statement without any."""
    if isinstance(result, sa.CursorResult) and not result.returns_rows:
        return ()
    return result.mappings().all()


def sqlstate_of(exc: DBAPIError) -> str | None:
    """The SQLSTATE of the driver's error under ``exc`` (asyncpg, psycopg or psycopg2)."""
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


@contextlib.contextmanager
def translated(
    what: str, timeouts: Timeouts | None, *, denied_hint: str = GRANTS_HINT
) -> Iterator[None]:
    """Raise the block's database errors as :func:`translate` says."""
    try:
        yield
    except DBAPIError as exc:
        error = translate(exc, what, timeouts, denied_hint=denied_hint)
        if error is None:
            raise
        raise error from exc


def translate(
    exc: DBAPIError, what: str, timeouts: Timeouts | None, *, denied_hint: str = GRANTS_HINT
) -> ChancyError | None:
    """The chancy error that says what to do about ``exc``, or None to raise it as it is.

    ``what`` names the operation ("the push"); ``timeouts`` are the limits chancy set on
    the connection (None: it set none, so the message speaks of the connection's own);
    ``denied_hint`` ends the message of a missing privilege."""
    sqlstate = sqlstate_of(exc)
    if sqlstate in (_UNDEFINED_TABLE, _UNDEFINED_COLUMN):
        return SchemaError()
    reason = reason_of(exc)
    if sqlstate == _LOCK_NOT_AVAILABLE and "lock timeout" in reason:
        limit = _limit("lock_timeout", timeouts.lock if timeouts else None)
        return LockTimeoutError(
            f"{what} waited longer than {limit} for a lock that another transaction holds, "
            "and was cancelled. Let that transaction finish (pg_locks and pg_stat_activity "
            "show it), or raise the limit with Chancy(lock_timeout=seconds)"
        )
    if sqlstate == _QUERY_CANCELED and "statement timeout" in reason:
        limit = _limit("statement_timeout", timeouts.statement if timeouts else None)
        return StatementTimeoutError(
            f"{what} ran longer than {limit}, and was cancelled; if it may take that long, "
            "raise the limit with Chancy(statement_timeout=seconds)"
        )
    if sqlstate == _INSUFFICIENT_PRIVILEGE:
        return PermissionDeniedError(
            f"{what} was refused by PostgreSQL ({reason}): the database role lacks a "
            f"privilege. {denied_hint}"
        )
    return None


def _limit(setting: str, seconds: float | None) -> str:
    if seconds is None:
        return f"its connection's {setting}"
    return f"{setting} ({seconds:g} s)"
