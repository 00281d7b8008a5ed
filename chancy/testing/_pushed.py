"""``assert_pushed``, ``refute_pushed`` and ``pushed_jobs``: what was pushed, as the
caller's connection sees it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from chancy.database.engine import hot_connection
from chancy.errors import ChancyError
from chancy.jobs import QueuedJob
from chancy.repository import HotExecutable, JobRepository
from chancy.repository.runner import sqlstate_of
from chancy.states import JobState
from chancy.testing._match import (
    JOBS_READ_MAX,
    Filters,
    missing_message,
    unexpected_message,
)

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["assert_pushed", "pushed_jobs", "refute_pushed"]

_jobs = JobRepository()
_ABORTED = "25P02"  # in_failed_sql_transaction


@contextlib.asynccontextmanager
async def _reading(where: Chancy | AsyncSession | AsyncConnection) -> AsyncIterator[HotExecutable]:
    """Where to read the jobs ``where`` sees: its own open transaction, if it has one
    (the jobs pushed in it are there, uncommitted); else a transaction of the helper's
    own, ended afterwards, so that ``where`` is left as it was (a session or connection
    the test goes on to ``begin()`` must not find a transaction begun)."""
    with aborted_transaction_explained():
        if isinstance(where, AsyncConnection):
            async with _connection_reading(where) as connection:
                yield connection
        elif isinstance(where, AsyncSession):
            async with _session_reading(where) as connection:
                yield connection
        else:
            async with hot_connection(_chancy_of(where).engine) as connection:
                yield connection


@contextlib.asynccontextmanager
async def _connection_reading(connection: AsyncConnection) -> AsyncIterator[HotExecutable]:
    if connection.closed:
        raise ChancyError(
            "assert_pushed got a closed AsyncConnection: it reads through the connection "
            "the jobs were pushed in, so pass it while it is open (inside its `async "
            "with engine.connect()` block)"
        )
    if connection.in_transaction():
        yield connection
        return
    transaction = await connection.begin()
    try:
        yield connection
    finally:
        await transaction.rollback()


@contextlib.asynccontextmanager
async def _session_reading(session: AsyncSession) -> AsyncIterator[HotExecutable]:
    if session.in_transaction():
        yield session
        return
    # No transaction: nothing uncommitted to see. Reading through the session would
    # begin one (and hold a connection) that the test never asked for.
    bind = session.bind
    if isinstance(bind, AsyncConnection):
        async with _connection_reading(bind) as connection:
            yield connection
    elif isinstance(bind, AsyncEngine):
        async with bind.connect() as connection:
            yield connection
    else:
        raise ChancyError(
            "assert_pushed got an AsyncSession with no transaction open and no engine of "
            "its own to read through; pass it while its transaction is open (after the "
            "push, before the commit), or pass the Chancy to see committed jobs"
        )


def _chancy_of(where: object) -> Chancy:
    from chancy.app import Chancy

    if not isinstance(where, Chancy):
        raise ChancyError(
            f"the first argument is where to look for jobs: a Chancy, an AsyncSession or an "
            f"AsyncConnection, not {type(where).__name__}; for a sync Session use "
            "chancy.testing.sync"
        )
    return where


@contextlib.contextmanager
def aborted_transaction_explained() -> Iterator[None]:
    """Say what to do when the caller's transaction was aborted by a failed statement:
    PostgreSQL refuses every statement in it until it is rolled back."""
    try:
        yield
    except DBAPIError as exc:
        if sqlstate_of(exc) != _ABORTED:
            raise
        raise ChancyError(
            "assert_pushed cannot read through this transaction: an earlier statement in it "
            "failed, and PostgreSQL ignores every statement until it is rolled back (its "
            "pushes are lost with it). Check the jobs before the statement that fails, or "
            "roll back and check that nothing was pushed"
        ) from exc


async def pushed_jobs(
    where: Chancy | AsyncSession | AsyncConnection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    state: JobState | str | None = None,
) -> list[QueuedJob]:
    """The jobs that match, oldest first, as ``where`` sees them: a :class:`Chancy` sees
    committed jobs, an ``AsyncSession`` or ``AsyncConnection`` also those pushed in its
    open transaction. ``func`` is the function or its stored name (``module.function``);
    ``kwargs`` matches as a subset (only the keys given are compared, after a JSON round
    trip as the job stores them); the other filters match exactly."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    async with _reading(where) as connection:
        return await _jobs.matching(connection, filters.query())


async def assert_pushed(
    where: Chancy | AsyncSession | AsyncConnection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    count: int | None = None,
    state: JobState | str | None = None,
) -> list[QueuedJob]:
    """The jobs that match (see :func:`pushed_jobs`); ``AssertionError`` when none does,
    or, with ``count``, when not exactly ``count`` do. The message lists what was pushed,
    the closest candidates first, each with the keys that differ."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    check_count(count)
    async with _reading(where) as connection:
        matched = await _jobs.matching(connection, filters.query())
        if not missed(matched, count):
            return matched
        candidates = await _jobs.newest(connection, JOBS_READ_MAX)
        total = await _jobs.count_all(connection)
    raise AssertionError(missing_message(candidates, total, filters, len(matched), count))


async def refute_pushed(
    where: Chancy | AsyncSession | AsyncConnection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    state: JobState | str | None = None,
) -> None:
    """``AssertionError`` if a job matches (see :func:`pushed_jobs`), listing them."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    async with _reading(where) as connection:
        matched = await _jobs.matching(connection, filters.query())
    if matched:
        raise AssertionError(unexpected_message(matched, filters))


def check_count(count: int | None) -> None:
    """Refuse a ``count=`` that is no number of jobs."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ChancyError(f"count= takes a number of jobs (0 or more), not {count!r}")


def missed(matched: list[QueuedJob], count: int | None) -> bool:
    """Whether ``assert_pushed`` fails with these matches."""
    return not matched if count is None else len(matched) != count
