"""The sync twins of :mod:`chancy.testing`, for tests of synchronous code.

``assert_pushed``, ``refute_pushed`` and ``pushed_jobs`` take a synchronous SQLAlchemy
``Session`` or ``Connection`` (any driver: psycopg, psycopg2), and see the jobs pushed
in its open transaction, as :func:`chancy.sync.push` makes them. ``drain`` and
``run_job`` run the async helpers on an event loop of their own (in a thread), so they
work from a plain test function; ``drain`` takes a :class:`~chancy.Chancy`, open or not,
and connects as it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from chancy.errors import ChancyError
from chancy.jobs import Job, QueuedJob
from chancy.repository import JobRepository
from chancy.states import JobState
from chancy.testing import _drain, _run
from chancy.testing._drain import DrainResult
from chancy.testing._loop import run_sync
from chancy.testing._match import JOBS_READ_MAX, Filters, select
from chancy.testing._pushed import check_not_pushed, check_pushed

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["DrainResult", "assert_pushed", "drain", "pushed_jobs", "refute_pushed", "run_job"]

_jobs = JobRepository()


def _read(where: Session | Connection) -> list[QueuedJob]:
    if isinstance(where, Connection):
        if where.closed:
            raise ChancyError(
                "assert_pushed got a closed Connection: it reads through the connection the "
                "jobs were pushed in, so pass it while it is open (inside its `with "
                "engine.connect()` block)"
            )
    elif not isinstance(where, Session):
        raise ChancyError(
            f"chancy.testing.sync reads jobs through a sync Session or Connection, not "
            f"{type(where).__name__}; for a Chancy, an AsyncSession or an AsyncConnection "
            "use chancy.testing"
        )
    return _jobs.newest_sync(where, JOBS_READ_MAX)


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
    return select(_read(where), filters)


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
    return check_pushed(_read(where), filters, count)


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
    check_not_pushed(_read(where), filters)


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
