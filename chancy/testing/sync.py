"""The sync twins of :mod:`chancy.testing`, for tests of synchronous code.

``assert_pushed``, ``refute_pushed`` and ``pushed_jobs`` take a synchronous SQLAlchemy
``Session`` or ``Connection`` (any driver: psycopg, psycopg2), and see the jobs pushed
in its open transaction, as :func:`chancy.sync.push` makes them. ``drain`` and
``run_job`` run the async helpers on an event loop of their own (in a thread), so they
work from a plain test function; ``drain`` takes a :class:`~chancy.Chancy`, open or not,
and connects as it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from chancy.errors import ChancyError
from chancy.jobs import Job, QueuedJob
from chancy.repository import JobRepository, SyncExecutable
from chancy.states import JobState
from chancy.testing import _drain, _run
from chancy.testing._drain import DrainResult
from chancy.testing._loop import run_sync
from chancy.testing._match import JOBS_READ_MAX, Filters, missing_message, unexpected_message
from chancy.testing._pushed import aborted_transaction_explained, check_count, missed

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["DrainResult", "assert_pushed", "drain", "pushed_jobs", "refute_pushed", "run_job"]

_jobs = JobRepository()


@contextlib.contextmanager
def _reading(where: Session | Connection) -> Iterator[SyncExecutable]:
    """Where to read the jobs ``where`` sees: its open transaction, else one of the
    helper's own, ended afterwards (``where`` is left as it was)."""
    with aborted_transaction_explained():
        if isinstance(where, Connection):
            with _connection_reading(where) as connection:
                yield connection
        elif isinstance(where, Session):
            with _session_reading(where) as connection:
                yield connection
        else:
            raise ChancyError(
                f"chancy.testing.sync reads jobs through a sync Session or Connection, not "
                f"{type(where).__name__}; for a Chancy, an AsyncSession or an AsyncConnection "
                "use chancy.testing"
            )


@contextlib.contextmanager
def _connection_reading(connection: Connection) -> Iterator[SyncExecutable]:
    if connection.closed:
        raise ChancyError(
            "assert_pushed got a closed Connection: it reads through the connection the "
            "jobs were pushed in, so pass it while it is open (inside its `with "
            "engine.connect()` block)"
        )
    if connection.in_transaction():
        yield connection
        return
    transaction = connection.begin()
    try:
        yield connection
    finally:
        transaction.rollback()


@contextlib.contextmanager
def _session_reading(session: Session) -> Iterator[SyncExecutable]:
    if session.in_transaction():
        yield session
        return
    bind = session.bind
    if isinstance(bind, Connection):
        with _connection_reading(bind) as connection:
            yield connection
    elif isinstance(bind, Engine):
        with bind.connect() as connection:
            yield connection
    else:
        raise ChancyError(
            "assert_pushed got a Session with no transaction open and no engine of its own "
            "to read through; pass it while its transaction is open (after the push, before "
            "the commit)"
        )


def pushed_jobs(
    where: Session | Connection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    state: JobState | str | None = None,
) -> list[QueuedJob]:
    """:func:`chancy.testing.pushed_jobs` on a sync ``Session`` or ``Connection``."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    with _reading(where) as connection:
        return _jobs.matching_sync(connection, filters.query())


def assert_pushed(
    where: Session | Connection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    count: int | None = None,
    state: JobState | str | None = None,
) -> list[QueuedJob]:
    """:func:`chancy.testing.assert_pushed` on a sync ``Session`` or ``Connection``."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    check_count(count)
    with _reading(where) as connection:
        matched = _jobs.matching_sync(connection, filters.query())
        if not missed(matched, count):
            return matched
        candidates = _jobs.newest_sync(connection, JOBS_READ_MAX)
        total = _jobs.count_all_sync(connection)
    raise AssertionError(missing_message(candidates, total, filters, len(matched), count))


def refute_pushed(
    where: Session | Connection,
    *,
    func: Callable[..., Any] | str | None = None,
    kwargs: Mapping[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    state: JobState | str | None = None,
) -> None:
    """:func:`chancy.testing.refute_pushed` on a sync ``Session`` or ``Connection``."""
    filters = Filters.of(func=func, kwargs=kwargs, queue=queue, priority=priority, state=state)
    with _reading(where) as connection:
        matched = _jobs.matching_sync(connection, filters.query())
    if matched:
        raise AssertionError(unexpected_message(matched, filters))


def drain(
    chancy: Chancy,
    *,
    queue: str | None = None,
    recursive: bool = True,
    with_scheduled: bool = False,
    raise_errors: bool = False,
    limit: int | None = None,
) -> DrainResult:
    """:func:`chancy.testing.drain` from synchronous code: on an event loop of its own,
    with a Chancy configured as ``chancy`` (its database, queues, allowed functions and
    timeouts)."""

    async def run() -> DrainResult:
        async with chancy.replica() as twin:
            return await _drain.drain(
                twin,
                queue=queue,
                recursive=recursive,
                with_scheduled=with_scheduled,
                raise_errors=raise_errors,
                limit=limit,
            )

    return run_sync(run)


def run_job(
    job_or_func: Job | Callable[..., Any],
    /,
    *,
    allowed: Iterable[str] | None = None,
    **kwargs: Any,
) -> Any:
    """:func:`chancy.testing.run_job` from synchronous code."""
    return run_sync(lambda: _run.run_job(job_or_func, allowed=allowed, **kwargs))
