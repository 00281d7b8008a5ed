"""Timeouts (:class:`Timeouts`): the ``lock_timeout`` and ``statement_timeout`` of chancy's
statements, so no statement of chancy's waits forever on a lock or runs forever.

The engines chancy creates give every connection both (server settings sent when
connecting, see :func:`chancy.database.engine.create_engine`). A push inside the
application's own transaction sets them with ``set_config(..., true)`` (``SET LOCAL``)
around chancy's statements and puts the application's values back right after
(:func:`local_timeouts`, :func:`local_timeouts_sync`): the rest of its transaction, and
its session, keep its own settings. An engine the application passes in (``engine=``) is
never changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from chancy.errors import ConfigurationError
from chancy.models import JobRow

__all__ = [
    "LOCK_TIMEOUT_DEFAULT",
    "STATEMENT_TIMEOUT_DEFAULT",
    "Timeouts",
    "local_timeouts",
    "local_timeouts_sync",
]

LOCK_TIMEOUT_DEFAULT = 5.0
STATEMENT_TIMEOUT_DEFAULT = 30.0


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
