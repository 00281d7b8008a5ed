"""Chancy: the entry point. Owns (or borrows) the engine and pushes and reads jobs.

::

    async with Chancy(dsn="postgresql://localhost/postgres",
                      queues=[Queue(name="default", concurrency=10)]) as chancy:
        await chancy.migrate()
        ref = await chancy.push("default", Job.from_func(send_email, kwargs={"to": "a@b.c"}))
        job = await chancy.get_job(ref)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, overload

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from chancy import migrations
from chancy.database import check_reachable, create_engine, describe, resolve_url
from chancy.errors import ChancyError, InvalidJobError, InvalidQueueError
from chancy.executor import Job, QueuedJob, Reference
from chancy.queue import Queue, validate_queue_name
from chancy.repository import JobRepository

__all__ = ["Chancy"]

log = logging.getLogger("chancy")

Transaction = AsyncSession | AsyncConnection


class Chancy:
    """A handle on one chancy database: push jobs, read them, migrate the schema.

    The database is, in order: ``engine`` (an ``AsyncEngine`` of the application's, used
    as is and never disposed by chancy), ``dsn``, the ``CHANCY_DSN`` environment variable,
    and last an embedded PostgreSQL started on first use. ``queues`` are the queues a
    worker started from this instance runs. ``engine_options`` are passed to
    ``create_async_engine`` when chancy makes the engine itself.

    Use it as an async context manager (or call :meth:`open` and :meth:`close`).
    """

    def __init__(
        self,
        dsn: str | URL | None = None,
        *,
        engine: AsyncEngine | None = None,
        queues: Iterable[Queue] = (),
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        if dsn is not None and engine is not None:
            raise ChancyError("pass either dsn= or engine=, not both")
        self.queues: tuple[Queue, ...] = tuple(queues)
        names = [queue.name for queue in self.queues]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise InvalidQueueError(f"queues {duplicates} are given more than once")
        self._dsn = dsn
        self._engine = engine
        self._owns_engine = engine is None
        self._engine_options = dict(engine_options or {})
        self._jobs = JobRepository()

    def __repr__(self) -> str:
        where = describe(self._engine.url) if self._engine is not None else "not open"
        return f"<Chancy {where} queues={[queue.name for queue in self.queues]}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the engine (unless one was given) and check that the server answers."""
        if self._engine is None:
            self._engine = create_engine(resolve_url(self._dsn), **self._engine_options)
        await check_reachable(self._engine)

    async def close(self) -> None:
        """Dispose of the engine if chancy created it; an engine passed in stays usable."""
        if self._owns_engine and self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> AsyncEngine:
        """The engine chancy runs on."""
        if self._engine is None:
            raise ChancyError("Chancy is not open; use `async with Chancy(...) as chancy:`")
        return self._engine

    async def migrate(self, *, revision: str = "head", sql: bool = False) -> str | None:
        """Upgrade chancy's schema to ``revision`` (default: the newest).

        Safe to call from many processes at once: they take turns. With ``sql=True`` the
        database is not touched; the DDL is returned for a DBA to review and apply.
        """
        if sql:
            return migrations.sql(revision)
        await migrations.upgrade(self.engine, revision)
        return None

    @overload
    async def push(self, job: Job, /, *, session: Transaction | None = None) -> Reference: ...

    @overload
    async def push(
        self, queue: str, job: Job, /, *, session: Transaction | None = None
    ) -> Reference: ...

    async def push(
        self, queue: str | Job, job: Job | None = None, /, *, session: Transaction | None = None
    ) -> Reference:
        """Store a job in ``queue`` (or, as ``push(job)``, in ``job.queue``).

        With ``session`` (an ``AsyncSession`` or ``AsyncConnection``), the job is written
        in that transaction and chancy commits nothing: it exists if the transaction
        commits and never did if it rolls back; workers are woken at commit. Without it,
        the push commits on its own.
        """
        if isinstance(queue, Job):
            if job is not None:
                raise InvalidJobError("push(job) takes one job; name the queue: push(queue, job)")
            batch = [queue]
        elif job is None:
            raise InvalidJobError(
                f"push({queue!r}) needs a job: push({queue!r}, Job.from_func(fn))"
            )
        else:
            batch = [_job(job).with_queue(validate_queue_name(queue))]
        (reference,) = await self._push(batch, session)
        return reference

    @overload
    async def push_many(
        self, jobs: Sequence[Job], /, *, session: Transaction | None = None
    ) -> list[Reference]: ...

    @overload
    async def push_many(
        self, queue: str, jobs: Sequence[Job], /, *, session: Transaction | None = None
    ) -> list[Reference]: ...

    async def push_many(
        self,
        queue: str | Sequence[Job],
        jobs: Sequence[Job] | None = None,
        /,
        *,
        session: Transaction | None = None,
    ) -> list[Reference]:
        """Store many jobs with one statement; one :class:`Reference` per job, in order.

        ``push_many(queue, jobs)`` puts all of them in ``queue``; ``push_many(jobs)`` uses
        each job's own queue. ``session`` works as for :meth:`push`.
        """
        if isinstance(queue, str):
            if jobs is None:
                raise InvalidJobError("push_many(queue, jobs) needs the jobs")
            batch = [_job(job).with_queue(validate_queue_name(queue)) for job in jobs]
        else:
            batch = [_job(job) for job in queue]
        return await self._push(batch, session)

    async def _push(self, batch: list[Job], session: Transaction | None) -> list[Reference]:
        if session is not None:
            return await self._jobs.push_many(session, batch)
        async with self.engine.begin() as connection:
            return await self._jobs.push_many(connection, batch)

    async def get_job(self, reference: Reference | int) -> QueuedJob | None:
        """The job as stored now, or None if no job has that id."""
        async with self.engine.connect() as connection:
            return await self._jobs.get(connection, int(reference))


def _job(value: object) -> Job:
    if not isinstance(value, Job):
        raise InvalidJobError(
            f"expected a Job, got {type(value).__name__}; wrap functions with Job.from_func(fn)"
        )
    return value
