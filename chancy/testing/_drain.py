"""``drain``: run the ready jobs in this process, through the worker's own statements."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import os
import secrets
from typing import TYPE_CHECKING, Any

from chancy.allowed import check_runnable
from chancy.database.engine import hot_connection
from chancy.errors import ChancyError, UnknownQueueError
from chancy.executor.coroutines import AsyncioExecutor
from chancy.jobs import QueuedJob
from chancy.repository import (
    Attempt,
    AttemptRepository,
    ClaimRepository,
    JobRepository,
    MaintenanceRepository,
    Outcome,
    QueueRepository,
)
from chancy.states import JobState
from chancy.worker import outcomes

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["RECURSIVE_RUNS_MAX", "DrainResult", "drain"]

# A drain runs one job at a time; its lease only matters if the test process dies.
_LEASE_SECONDS = 300.0

RECURSIVE_RUNS_MAX = 10_000
"""The jobs pushed during a drain (by the jobs it ran) that a recursive drain without
``limit`` runs before it takes them for an endless chain and raises."""

_ENDLESS = (
    f"drain ran {RECURSIVE_RUNS_MAX} jobs that the drained jobs pushed, and they push "
    "still more: a job that pushes a job each time it runs keeps a recursive drain going "
    "forever. Pass limit= to run at most that many attempts (any number), or "
    "recursive=False to leave the jobs they push ready"
)


@dataclasses.dataclass(slots=True)
class DrainResult:
    """What :func:`drain` ran: how many attempts ended in each way, and the jobs as they
    stood after their last attempt of the drain (in the order they last ran)."""

    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    jobs: list[QueuedJob] = dataclasses.field(default_factory=list)

    @property
    def ran(self) -> int:
        """How many attempts ran."""
        return self.succeeded + self.failed + self.retried + self.cancelled


async def drain(
    chancy: Chancy,
    *,
    queue: str | None = None,
    recursive: bool = True,
    with_scheduled: bool = False,
    raise_errors: bool = False,
    limit: int | None = None,
) -> DrainResult:
    """Run the ready jobs of ``queue`` (default: every declared queue) in this process,
    one at a time, until none is left, and return what ran.

    Jobs are claimed and their outcomes written by the statements a worker uses: lowest
    priority value first, then oldest; a queue's pause and cluster-wide limits, and the
    jobs' concurrency and rate keys, are honoured (a job they hold back is left ready, not
    run); a failed attempt with attempts left is retried later, as in a worker. Functions
    run on this event loop (plain functions in a thread), with ``Chancy(allowed=...)``
    checked.

    ``recursive``: also run the jobs the drained jobs push (else they are left ready).
    ``with_scheduled``: also run scheduled and retrying jobs now, whatever their time
    (so a retried job runs again at once, until it succeeds or has no attempts left).
    ``raise_errors``: stop at the first job that raises, after writing its outcome, and
    raise its exception. ``limit``: run at most that many attempts; without it, a
    recursive drain that has run :data:`RECURSIVE_RUNS_MAX` jobs pushed during it raises
    :class:`~chancy.errors.ChancyError` (jobs that push jobs forever would never let it
    end).

    A job is never left ``running``: if the drain is interrupted (the test is cancelled,
    a job raises ``KeyboardInterrupt``), the job it was running is given back, ready.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ChancyError(f"limit= takes a number of jobs (0 or more), not {limit!r}")
    names = await _queues(chancy, queue)
    run = _Drain(chancy, names, recursive=recursive, with_scheduled=with_scheduled)
    return await run.run(raise_errors=raise_errors, limit=limit)


async def _queues(chancy: Chancy, queue: str | None) -> list[str]:
    """The queues to drain: ``queue`` if declared, else every declared one."""
    await chancy.declare_configured()
    async with hot_connection(chancy.engine) as connection:
        declared = [info.name for info in await QueueRepository().list_all(connection)]
    if queue is None:
        return declared
    if queue not in declared:
        close = difflib.get_close_matches(queue, declared, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownQueueError(
            f"drain(queue={queue!r}): no queue of that name is declared{hint} Declare it "
            "(Chancy(queues=[...]) or `await chancy.declare(Queue(name=...))`), or drain "
            "every queue with drain(chancy)"
        )
    return [queue]


class _Drain:
    def __init__(
        self, chancy: Chancy, queues: list[str], *, recursive: bool, with_scheduled: bool
    ) -> None:
        self.chancy = chancy
        self.queues = queues
        self.recursive = recursive
        self.with_scheduled = with_scheduled
        self.worker_id = f"chancy.testing:{os.getpid()}:{secrets.token_hex(3)}"
        self.result = DrainResult()
        self._claims = ClaimRepository()
        self._attempts = AttemptRepository()
        self._jobs = JobRepository()
        self._maintenance = MaintenanceRepository()
        self._last: dict[int, QueuedJob] = {}
        self._claiming: asyncio.Future[QueuedJob | None] | None = None

    async def run(self, *, raise_errors: bool, limit: int | None) -> DrainResult:
        newest = await self._newest_id()
        pushed_meanwhile = 0
        executor = AsyncioExecutor(1, allowed=self.chancy.allowed)
        await executor.start()
        try:
            while limit is None or self.result.ran < limit:
                job = await self._claim_to_the_end()
                if job is None:
                    break
                if job.id > newest:
                    if not self.recursive:
                        continue  # held back: its claim is undone at the end
                    pushed_meanwhile += 1
                    if limit is None and pushed_meanwhile > RECURSIVE_RUNS_MAX:
                        raise ChancyError(_ENDLESS)
                error = await self._run_one(job, executor)
                if error is not None and raise_errors:
                    raise error
        finally:
            # Also a claim whose answer a cancellation cut off: never left running.
            await asyncio.shield(self._unclaim_all())
            await executor.stop()
        self.result.jobs = list(self._last.values())
        return self.result

    async def _newest_id(self) -> int:
        async with hot_connection(self.chancy.engine) as connection:
            newest = await self._jobs.newest(connection, 1)
        return newest[0].id if newest else 0

    async def _claim_to_the_end(self) -> QueuedJob | None:
        """:meth:`_claim_next`, which a cancellation does not cut short: cut off, the claim
        may still commit on the server after the drain has undone its claims."""
        self._claiming = asyncio.ensure_future(self._claim_next())
        return await asyncio.shield(self._claiming)

    async def _claim_next(self) -> QueuedJob | None:
        """Claim the job a worker would run next: from the queue whose first ready job
        comes first, else from the next queue (the first's may be held back by its
        limits)."""
        async with hot_connection(self.chancy.engine) as connection:
            if self.with_scheduled:
                await self._maintenance.make_due_now(connection, self.queues)
            for name in await self._jobs.queues_by_next_job(connection, self.queues):
                claimed = await self._claims.claim_available(
                    connection,
                    name,
                    1,
                    self.worker_id,
                    lease_seconds=_LEASE_SECONDS,
                    limited=True,
                )
                if claimed:
                    return claimed[0]
        return None

    async def _run_one(self, job: QueuedJob, executor: AsyncioExecutor) -> Exception | None:
        """Run ``job`` and write its outcome; returns what it raised."""
        raised: Exception | None = None
        written = False
        try:
            try:
                check_runnable(job, self.chancy.allowed)
                value: Any = await executor.run(job)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the drain itself is cancelled: the job is given back below
                raised = exc  # type: ignore[assignment]  # the job raised it: it fails
                outcome = outcomes.failure(job, exc, worker_id=self.worker_id)
            except Exception as exc:
                raised = exc
                outcome = outcomes.failure(job, exc, worker_id=self.worker_id)
            else:
                outcome = outcomes.success(job, value)
            await self._write(outcome)
            written = True
        finally:
            if not written:
                await asyncio.shield(self._give_back(job))
        await self._record(job, outcome)
        return raised

    async def _write(self, outcome: Outcome) -> None:
        async with hot_connection(self.chancy.engine) as connection:
            await self._attempts.complete_many_if_running(connection, [outcome])

    async def _give_back(self, job: QueuedJob) -> None:
        """Give back the job whose run was interrupted: ready again at once."""
        async with hot_connection(self.chancy.engine) as connection:
            await self._attempts.release_many_if_running(connection, [Attempt(job.id, job.fence)])

    async def _unclaim_all(self) -> None:
        """Undo the claims of the jobs this drain claimed and never started: those held
        back (a drain that is not recursive), and one whose claim was cut off."""
        if self._claiming is not None:
            with contextlib.suppress(Exception):  # raised to the drain already
                await self._claiming
        async with hot_connection(self.chancy.engine) as connection:
            await self._attempts.unclaim_all_of(connection, self.worker_id)

    async def _record(self, job: QueuedJob, outcome: Outcome) -> None:
        async with hot_connection(self.chancy.engine) as connection:
            stored = await self._jobs.get(connection, job.id)
        state = stored.state if stored is not None else outcome.state
        if state is JobState.SUCCEEDED:
            self.result.succeeded += 1
        elif state is JobState.CANCELLED:
            self.result.cancelled += 1
        elif state is JobState.FAILED:
            self.result.failed += 1
        else:
            self.result.retried += 1
        if stored is not None:
            self._last.pop(job.id, None)
            self._last[job.id] = stored
