"""Database errors a user can act on, turned into chancy errors that say what to do.

:func:`database_errors` wraps an operation: a lock timeout (``55P03``) becomes
:class:`~chancy.errors.LockTimeoutError`, a statement timeout (``57014``)
:class:`~chancy.errors.StatementTimeoutError`, each naming the limit chancy set when it
knows it, and a missing privilege (``42501``) :class:`~chancy.errors.PermissionDeniedError`
with a hint (by default :data:`GRANTS_HINT`). Any other database error is raised as is.
The chancy error keeps the database's error as its cause.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError

from chancy.database.dsn import reason_of
from chancy.database.timeouts import Timeouts
from chancy.errors import (
    ChancyError,
    LockTimeoutError,
    PermissionDeniedError,
    StatementTimeoutError,
)

__all__ = ["GRANTS_HINT", "database_errors"]

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
    reason = reason_of(exc)
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
