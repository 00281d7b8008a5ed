"""Chancy: the entry point. Owns (or borrows) the engine and pushes and reads jobs.

::

    async with Chancy(dsn="postgresql://localhost/postgres",
                      queues=[Queue(name="default", concurrency=10)]) as chancy:
        await chancy.migrate()
        ref = await chancy.push("default", Job.from_func(send_email, kwargs={"to": "a@b.c"}))
        job = await chancy.get_job(ref)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, overload

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from chancy import migrations
from chancy.database import check_reachable, create_engine, describe, hot_connection, resolve_url
from chancy.errors import ChancyError, InvalidJobError, InvalidQueueError
from chancy.executor import Job, QueuedJob, Reference
from chancy.listener import Event, Listener
from chancy.queue import Queue, validate_queue_name
from chancy.repository import JobRepository
from chancy.states import FINISHED_STATES

__all__ = ["Chancy"]

log = logging.getLogger("chancy")

Transaction = AsyncSession | AsyncConnection
WAIT_POLL_INTERVAL_DEFAULT = 1.0


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
        self._listener: Listener | None = None

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
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
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
        (reference,) = await self._push(one_job(queue, job), session)
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
        return await self._push(many_jobs(queue, jobs), session)

    async def _push(self, batch: list[Job], session: Transaction | None) -> list[Reference]:
        if session is not None:
            return await self._jobs.push_many(session, batch)
        async with hot_connection(self.engine) as connection:
            return await self._jobs.push_many(connection, batch)

    async def get_job(self, reference: Reference | int) -> QueuedJob | None:
        """The job as stored now, or None if no job has that id."""
        async with self.engine.connect() as connection:
            return await self._jobs.get(connection, int(reference))

    async def wait_for_job(
        self,
        reference: Reference | int,
        *,
        timeout: float | None = None,
        poll_interval: float = WAIT_POLL_INTERVAL_DEFAULT,
    ) -> QueuedJob:
        """Wait until the job is finished (succeeded, failed or cancelled) and return it.

        Woken by the ``finished`` notification as the outcome commits; it also looks
        every ``poll_interval`` seconds, in case a notification was lost. Raises
        ``TimeoutError`` after ``timeout`` seconds, and :class:`ChancyError` for an
        unknown job.
        """
        changed = asyncio.Event()
        job_id = int(reference)

        def on_event(event: Event) -> None:
            ids = event.get("ids") or ()
            if event.get("event") == "reconnected" or job_id in ids:
                changed.set()

        unsubscribe = (await self.listener()).subscribe(on_event)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    job = await self.get_job(job_id)
                    if job is None:
                        raise ChancyError(f"there is no job {job_id}")
                    if job.state in FINISHED_STATES:
                        return job
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=poll_interval)
                    changed.clear()
        finally:
            unsubscribe()

    async def cancel_job(self, reference: Reference | int) -> QueuedJob | None:
        """Cancel a job that has not finished: a waiting one never runs, a running one is
        interrupted where its executor can (see each executor) and ends ``cancelled``
        either way; its worker's late outcome is not written. Returns the job as
        cancelled, or None if it had already finished (or does not exist)."""
        async with self.engine.begin() as connection:
            return await self._jobs.cancel(connection, int(reference))

    async def retry_job(self, reference: Reference | int) -> QueuedJob | None:
        """Put a failed or cancelled job back in its queue, ready now, with one more
        attempt allowed. Returns it, or None if it was not failed or cancelled."""
        async with self.engine.begin() as connection:
            return await self._jobs.retry(connection, int(reference))

    async def listener(self) -> Listener:
        """The process's LISTEN connection on chancy's events, started on first use."""
        if self._listener is None:
            self._listener = Listener(self.engine)
            await self._listener.start()
        return self._listener


def one_job(queue: str | Job, job: Job | None) -> list[Job]:
    """The batch of ``push(queue, job)`` or ``push(job)``, checked."""
    if isinstance(queue, Job):
        if job is not None:
            raise InvalidJobError("push(job) takes one job; name the queue: push(queue, job)")
        return [queue]
    if job is None:
        raise InvalidJobError(f"push({queue!r}) needs a job: push({queue!r}, Job.from_func(fn))")
    return [_job(job).with_queue(validate_queue_name(queue))]


def many_jobs(queue: str | Sequence[Job], jobs: Sequence[Job] | None) -> list[Job]:
    """The batch of ``push_many(queue, jobs)`` or ``push_many(jobs)``, checked."""
    if not isinstance(queue, str):
        return [_job(job) for job in queue]
    if jobs is None:
        raise InvalidJobError("push_many(queue, jobs) needs the jobs")
    name = validate_queue_name(queue)
    return [_job(job).with_queue(name) for job in jobs]


def _job(value: object) -> Job:
    if not isinstance(value, Job):
        raise InvalidJobError(
            f"expected a Job, got {type(value).__name__}; wrap functions with Job.from_func(fn)"
        )
    return value
