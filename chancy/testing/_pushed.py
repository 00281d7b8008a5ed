"""``assert_pushed``, ``refute_pushed`` and ``pushed_jobs``: what was pushed, as the
caller's connection sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chancy.database.engine import hot_connection
from chancy.errors import ChancyError
from chancy.jobs import QueuedJob
from chancy.repository import JobRepository
from chancy.states import JobState
from chancy.testing._match import (
    JOBS_READ_MAX,
    Filters,
    missing_message,
    select,
    unexpected_message,
)

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["assert_pushed", "pushed_jobs", "refute_pushed"]

_jobs = JobRepository()


async def _read(where: Chancy | AsyncSession | AsyncConnection) -> list[QueuedJob]:
    """The newest jobs, newest first, as ``where`` sees them."""
    if isinstance(where, AsyncConnection):
        if where.closed:
            raise ChancyError(
                "assert_pushed got a closed AsyncConnection: it reads through the connection "
                "the jobs were pushed in, so pass it while it is open (inside its `async "
                "with engine.connect()` block)"
            )
        return await _jobs.newest(where, JOBS_READ_MAX)
    if isinstance(where, AsyncSession):
        return await _jobs.newest(where, JOBS_READ_MAX)
    from chancy.app import Chancy

    if not isinstance(where, Chancy):
        raise ChancyError(
            f"the first argument is where to look for jobs: a Chancy, an AsyncSession or an "
            f"AsyncConnection, not {type(where).__name__}; for a sync Session use "
            "chancy.testing.sync"
        )
    async with hot_connection(where.engine) as connection:
        return await _jobs.newest(connection, JOBS_READ_MAX)


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
    return select(await _read(where), filters)


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
    jobs = await _read(where)
    return check_pushed(jobs, filters, count)


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
    check_not_pushed(await _read(where), filters)


def check_pushed(jobs: list[QueuedJob], filters: Filters, count: int | None) -> list[QueuedJob]:
    """The matches among ``jobs`` (newest first), or the ``AssertionError`` of
    :func:`assert_pushed`."""
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ChancyError(f"count= takes a number of jobs (0 or more), not {count!r}")
    matched = select(jobs, filters)
    if (count is None and not matched) or (count is not None and len(matched) != count):
        raise AssertionError(missing_message(jobs, filters, len(matched), count))
    return matched


def check_not_pushed(jobs: list[QueuedJob], filters: Filters) -> None:
    """The ``AssertionError`` of :func:`refute_pushed`, if a job of ``jobs`` matches."""
    matched = select(jobs, filters)
    if matched:
        raise AssertionError(unexpected_message(matched, filters))
