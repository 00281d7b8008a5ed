"""What the job contexts of a worker's running jobs report: their progress, written at a
bounded pace, and which of them complete themselves in their own transaction."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import hot_connection
from chancy.jobs import QueuedJob
from chancy.repository import Attempt, AttemptRepository

__all__ = ["PROGRESS_INTERVAL_DEFAULT", "JobReports"]

log = logging.getLogger("chancy.worker")

PROGRESS_INTERVAL_DEFAULT = 1.0
"""The least time between two writes of one job's progress, in seconds."""


@dataclasses.dataclass(slots=True)
class _Progress:
    """One running attempt's progress: the latest value not written yet (``held``), when
    it was last written, and whether a writer is on its way (``writing``)."""

    attempt: Attempt
    held: tuple[float, str | None] | None = None
    written_at: float | None = None
    writing: bool = False
    writer: asyncio.Task[None] | None = None
    now: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class JobReports:
    """The worker's :class:`~chancy.context.ContextReporter`.

    Progress: each attempt's is written at most once every ``interval`` seconds (the
    first at once), fenced by its token, on a connection of ``engine``'s pool; a value
    reported meanwhile replaces the one waiting, and :meth:`end` writes the latest before
    the job's outcome. A write that fails is logged, never raised into the job. Reports
    come from any thread (a job in a thread; the processes executor's pipe, on the loop):
    a report only replaces the value held, and wakes the loop only when no write is on
    its way, so a job reporting in a tight loop costs the worker one write per interval.
    Reports of a job that ``is_running`` no longer counts (a thread left running after
    its job ended) are dropped. ``clock``: seconds, for tests.

    Completing: the ids of the jobs that called ``JobContext.complete_in`` in their
    current attempt (:meth:`completing`), so that the worker lets them finish when it
    learns that they are no longer running, and judges their refused outcome fine.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        is_running: Callable[[int], bool],
        *,
        interval: float = PROGRESS_INTERVAL_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._is_running = is_running
        self._interval = interval
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._attempts = AttemptRepository()
        self._progress: dict[int, _Progress] = {}
        self._completing: set[int] = set()
        self._lock = threading.Lock()  # held to change the two collections or a _Progress
        self.writes = 0
        """How many progress writes changed a row (for tests and metrics)."""

    def progress(self, job: QueuedJob, fraction: float, message: str | None) -> None:
        with self._lock:
            progress = self._progress.get(job.id)
            if progress is None or progress.attempt.fence != job.fence:
                if not self._is_running(job.id):
                    return
                progress = self._progress[job.id] = _Progress(Attempt(job.id, job.fence))
            progress.held = (fraction, message)
            if progress.writing:
                return
            progress.writing = True
        if threading.get_ident() == self._loop_thread:
            self._start_writer(progress)
        else:
            self._loop.call_soon_threadsafe(self._start_writer, progress)

    def completing(self, job: QueuedJob) -> None:
        with self._lock:
            self._completing.add(job.id)

    def is_completing(self, job_id: int) -> bool:
        """Whether ``job_id`` called ``complete_in`` in its current attempt."""
        return job_id in self._completing

    def has(self, job_id: int) -> bool:
        """Whether ``job_id``'s context reported anything (so :meth:`end` has work)."""
        return job_id in self._progress or job_id in self._completing

    async def end(self, job_id: int) -> None:
        """The job's run ended: write its latest progress, if not written yet, and forget
        it. Awaited before its outcome is added (which would fence the write off)."""
        with self._lock:
            self._completing.discard(job_id)
            progress = self._progress.pop(job_id, None)
        if progress is None:
            return
        progress.now.set()
        if progress.writer is None and progress.writing:
            await asyncio.sleep(0)  # the writer is about to start (call_soon_threadsafe)
        if progress.writer is not None:
            await asyncio.shield(progress.writer)
        elif progress.held is not None:
            await self._write(progress)

    def forget(self, job_id: int) -> None:
        """The run was interrupted (given back, or lost): write nothing more of it."""
        with self._lock:
            self._completing.discard(job_id)
            progress = self._progress.pop(job_id, None)
        if progress is not None and progress.writer is not None:
            progress.writer.cancel()

    def _start_writer(self, progress: _Progress) -> None:
        progress.writer = self._loop.create_task(self._write_paced(progress))

    async def _write_paced(self, progress: _Progress) -> None:
        """Write what ``progress`` holds until it holds nothing, at most once per
        interval (at once after :meth:`end` set ``now``)."""
        while True:
            if progress.written_at is not None and not progress.now.is_set():
                wait = progress.written_at + self._interval - self._clock()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(progress.now.wait(), wait)
            with self._lock:
                if progress.held is None:
                    progress.writing = False
                    return
            await self._write(progress)

    async def _write(self, progress: _Progress) -> None:
        with self._lock:
            value, progress.held = progress.held, None
        if value is None:
            return
        progress.written_at = self._clock()
        try:
            async with hot_connection(self._engine) as connection:
                written = await self._attempts.store_progress(connection, progress.attempt, *value)
        except Exception as exc:
            log.warning("job %d: could not store its progress (%s)", progress.attempt.id, exc)
            return
        if written:
            self.writes += 1
