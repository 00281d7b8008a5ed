"""The job context: what a running job may ask of chancy about its own attempt.

A job function receives it by declaring a keyword-only parameter annotated
:class:`JobContext` (as it may declare one annotated :class:`~chancy.jobs.QueuedJob`)::

    async def charge(order_id: int, *, ctx: JobContext) -> None:
        async with AsyncSession(app_engine) as session, session.begin():
            await record_charge(session, order_id)
            await ctx.complete_in(session)  # the job succeeded iff this commits

Every write is fenced like the worker's own: it names the attempt's fencing token, so an
attempt that no longer holds its job (cancelled, or taken over after its lease expired)
changes nothing. The context works the same on the asyncio, threads and processes
executors and in :func:`chancy.testing.run_job`.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from chancy.errors import JobNotRunningError, ResultNotStorableError
from chancy.jobs import QueuedJob
from chancy.repository import Attempt, AttemptRepository, Completion
from chancy.states import JobState

__all__ = [
    "PROGRESS_MESSAGE_MAX",
    "SILENT",
    "ContextReporter",
    "JobContext",
    "Rehearsal",
    "checked_progress",
]

PROGRESS_MESSAGE_MAX = 1000
"""The most characters a progress message may have."""


class ContextReporter(Protocol):
    """Where a context reports what its job did (the worker, a child process's pipe, or
    :func:`~chancy.testing.run_job`). Both methods return at once, from any thread."""

    def progress(self, job: QueuedJob, fraction: float, message: str | None) -> None:
        """The job reported this progress (checked); store it when the pace allows."""

    def completing(self, job: QueuedJob) -> None:
        """The job is about to mark itself succeeded in its own transaction."""


class _Silent:
    """A reporter that keeps nothing: for an executor used on its own, without a worker."""

    def progress(self, job: QueuedJob, fraction: float, message: str | None) -> None:
        pass

    def completing(self, job: QueuedJob) -> None:
        pass


SILENT: ContextReporter = _Silent()


class Rehearsal:
    """The reporter of a run with no stored job (:func:`chancy.testing.run_job`): its
    context writes nothing, and this keeps what it reported."""

    def __init__(self) -> None:
        self.progress_reports: list[tuple[float, str | None]] = []
        self.completed = False
        self.completed_result: Any = None

    def progress(self, job: QueuedJob, fraction: float, message: str | None) -> None:
        self.progress_reports.append((fraction, message))

    def completing(self, job: QueuedJob) -> None:
        pass


class JobContext:
    """The running attempt of one job, as its function sees it.

    ``job``: the :class:`~chancy.jobs.QueuedJob` of this attempt.
    :meth:`complete_in` marks the attempt succeeded in the caller's transaction;
    :meth:`progress` reports how far it got. To snooze or cancel the job, raise
    :class:`~chancy.control.Snooze` or :class:`~chancy.control.Cancel`.
    """

    def __init__(self, job: QueuedJob, reporter: ContextReporter) -> None:
        self.job = job
        self._reporter = reporter
        self._stored = not isinstance(reporter, Rehearsal)  # run_job: no row to write
        self._attempts = AttemptRepository()
        self._latest: tuple[float, str | None] | None = None

    def __repr__(self) -> str:
        return f"<JobContext job={self.job.id} attempt={self.job.attempts}>"

    async def complete_in(
        self, session_or_connection: AsyncSession | AsyncConnection, result: Any = None
    ) -> None:
        """Mark this attempt succeeded, with ``result`` (any JSON value), in the
        transaction of ``session_or_connection`` (an ``AsyncSession`` or
        ``AsyncConnection`` of the application's; use :meth:`complete_in_sync` for a sync
        one). If the transaction commits, the job has succeeded and never runs again,
        whatever happens to the worker afterwards; if it rolls back, nothing happened
        and the job ends (or is retried) as the function's own end says.

        Raises :class:`~chancy.errors.JobNotRunningError` when this attempt no longer
        holds its job (cancelled, completed already, or taken over): let it propagate so
        that the transaction rolls back. Raises
        :class:`~chancy.errors.ResultNotStorableError` for a result that cannot be
        stored as JSON.
        """
        if not isinstance(session_or_connection, AsyncSession | AsyncConnection):
            raise TypeError(_wrong_connection("complete_in", session_or_connection))
        completion = self._completion(result)
        if self._stored:
            written = await self._attempts.complete_in(
                session_or_connection, self._attempt(), completion
            )
            self._check_written(written)
        self._completed(result)

    def complete_in_sync(
        self, session_or_connection: Session | Connection, result: Any = None
    ) -> None:
        """:meth:`complete_in` for sync functions: in the transaction of a synchronous
        ``Session`` or ``Connection`` of the application's (any driver)."""
        if not isinstance(session_or_connection, Session | Connection):
            raise TypeError(_wrong_connection("complete_in_sync", session_or_connection))
        completion = self._completion(result)
        if self._stored:
            written = self._attempts.complete_in_sync(
                session_or_connection, self._attempt(), completion
            )
            self._check_written(written)
        self._completed(result)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job got: ``fraction`` from 0 to 1, and an optional
        ``message`` (a str of at most :data:`PROGRESS_MESSAGE_MAX` characters). Stored on
        the job at most once a second (the latest value always lands when the attempt
        ends) and shown by ``chancy job show`` and ``Chancy.get_job``. Returns at once: a
        failed write is logged by the worker, never raised here. A bad value raises
        ``ValueError`` or ``TypeError`` naming the problem."""
        self.progress_sync(fraction, message)

    def progress_sync(self, fraction: float, message: str | None = None) -> None:
        """:meth:`progress` for sync functions (it never blocks)."""
        fraction, message = checked_progress(fraction, message)
        self._latest = (fraction, message)
        self._reporter.progress(self.job, fraction, message)

    def _attempt(self) -> Attempt:
        return Attempt(self.job.id, self.job.fence)

    def _completion(self, result: Any) -> Completion:
        from chancy.worker import outcomes  # the worker's package imports the executors

        outcome = outcomes.success(self.job, result)
        if outcome.state is not JobState.SUCCEEDED:
            message = (outcome.error or {}).get("message", "the result cannot be stored")
            raise ResultNotStorableError(message)
        self._reporter.completing(self.job)
        fraction, message = self._latest if self._latest is not None else (None, None)
        return Completion(outcome.result_json, fraction, message)

    def _check_written(self, written: bool) -> None:
        if not written:
            raise JobNotRunningError(
                f"job {self.job.id} attempt {self.job.attempts} no longer holds its job (it "
                "was cancelled, completed already, or its lease expired and another worker "
                "took it over): nothing was written; let this error roll the transaction back"
            )

    def _completed(self, result: Any) -> None:
        if isinstance(self._reporter, Rehearsal):
            self._reporter.completed = True
            self._reporter.completed_result = result


def checked_progress(fraction: object, message: object) -> tuple[float, str | None]:
    """``fraction`` and ``message`` as stored, or ``ValueError``/``TypeError`` naming what
    is wrong with them: a fraction must be a finite number from 0 to 1, a message a str
    (or None) of at most :data:`PROGRESS_MESSAGE_MAX` characters that PostgreSQL can store
    (no NUL character, no lone surrogate)."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise TypeError(f"progress takes a fraction from 0 to 1, not {type(fraction).__name__}")
    if not math.isfinite(fraction) or not 0 <= fraction <= 1:
        raise ValueError(
            f"progress {fraction!r} is not a fraction: give a finite number from 0 to 1 "
            "(0.4 for 40 %)"
        )
    if message is None:
        return float(fraction), None
    if not isinstance(message, str):
        raise TypeError(f"a progress message must be a str or None, not {type(message).__name__}")
    if len(message) > PROGRESS_MESSAGE_MAX:
        raise ValueError(
            f"a progress message has {len(message)} characters; give at most {PROGRESS_MESSAGE_MAX}"
        )
    from chancy.worker.outcomes import storable_text  # see JobContext._completion

    if storable_text(message) != message:
        raise ValueError(
            "a progress message holds a NUL character or a lone surrogate, which PostgreSQL "
            "cannot store; remove it"
        )
    return float(fraction), message


def _wrong_connection(method: str, given: object) -> str:
    if method == "complete_in":
        hint = "an AsyncSession or AsyncConnection (for a sync one, use complete_in_sync)"
    else:
        hint = "a sync Session or Connection (for an async one, await complete_in)"
    return f"JobContext.{method}() takes {hint}, not {type(given).__name__}"
