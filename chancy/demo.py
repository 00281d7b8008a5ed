"""The demo behind ``chancy demo``: push jobs of mixed priorities, run them, prove the order.

:func:`run_demo` pushes ``jobs`` calls of :func:`demo_job` with priorities drawn from
:data:`DEMO_PRIORITIES` into a queue of its own (``demo-<random hex>``, so runs never mix),
runs a :class:`~chancy.worker.Worker` over that queue until every job has finished, and
returns a :class:`DemoReport` with the figures, read back from the database. A run first
deletes the queues (and jobs) of earlier runs whose jobs have all finished.

The order proof: all jobs are pending before the worker starts, and the queue has one
producer, so each claim takes the next lowest ``(priority, id)`` jobs. A claim stamps
its jobs' ``started_at`` with its transaction's time, so a job claimed in an earlier
claim has an earlier ``started_at``. The proof checks, over the stored rows, that no job
started before a job of a lower priority (or, among equal priorities, of a lower id).
Jobs of one claim share their ``started_at`` and are not compared with each other.

The jobs stay in the database afterwards, for ``chancy job show``, until the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as datetime_module
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import groupby

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from chancy.app import Chancy
from chancy.callables import name_of
from chancy.database.dsn import describe
from chancy.errors import InvalidQueueError
from chancy.jobs import Job
from chancy.queue import Queue
from chancy.repository import JobRepository
from chancy.states import FINISHED_STATES, JobState
from chancy.worker import Worker

__all__ = [
    "DEMO_CONCURRENCY_DEFAULT",
    "DEMO_JOBS_DEFAULT",
    "DEMO_PRIORITIES",
    "REPORT_NOTES",
    "DemoReport",
    "OrderViolation",
    "StartedJob",
    "demo_job",
    "find_order_violation",
    "report_table",
    "run_demo",
]

DEMO_QUEUE_PREFIX = "demo-"
DEMO_JOBS_DEFAULT = 300
DEMO_CONCURRENCY_DEFAULT = 10
DEMO_PRIORITIES = (-10, 0, 10)
DEMO_WORK_MS_MAX = 20
DEMO_PUSH_BATCH = 100
DEMO_POLL_INTERVAL_DEFAULT = 0.1
DEMO_STALL_TIMEOUT_DEFAULT = 30.0


async def demo_job(number: int, work_ms: int) -> int:
    """One demo job: waits ``work_ms`` milliseconds, as a job waiting on I/O would, and
    returns ``number``."""
    await asyncio.sleep(work_ms / 1000)
    return number


@dataclasses.dataclass(frozen=True, slots=True)
class StartedJob:
    """A demo job as the order proof sees it: its id, priority and claim time."""

    id: int
    priority: int
    started_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class OrderViolation:
    """Two jobs claimed out of order: ``earlier`` started first, yet ``later`` should
    have run before it."""

    earlier: StartedJob
    later: StartedJob

    def __str__(self) -> str:
        first, second = self.earlier, self.later
        return (
            f"job {first.id} (priority {first.priority}) started at "
            f"{first.started_at.isoformat()}, before job {second.id} (priority "
            f"{second.priority}) at {second.started_at.isoformat()}"
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DemoReport:
    """What a demo run did, as the database recorded it.

    ``states``: how many jobs ended in each state. ``claims``: how many claims the worker
    made (distinct ``started_at`` values); the order proof compares jobs across claims.
    ``wall_seconds``: from the worker's start until every job had finished, measured by
    this process. ``drain_seconds``: from the first claim to the last completion, by the
    database's clock. ``priority_violation`` / ``fifo_violation``: the first pair of jobs
    found out of priority order / out of push order within a priority, or None.
    ``interrupted``: the run was stopped (Ctrl-C) before every job had finished.
    """

    database: str
    queue: str
    jobs: int
    concurrency: int
    states: Mapping[str, int]
    claims: int
    wall_seconds: float
    drain_seconds: float
    priority_violation: OrderViolation | None
    fifo_violation: OrderViolation | None
    first_job_id: int | None
    interrupted: bool = False

    @property
    def succeeded(self) -> int:
        return self.states.get(JobState.SUCCEEDED, 0)

    @property
    def throughput(self) -> float:
        """Succeeded jobs per second of drain time."""
        return self.succeeded / self.drain_seconds if self.drain_seconds > 0 else 0.0

    @property
    def unfinished(self) -> int:
        """Jobs of the run that had not finished when it ended."""
        return sum(self.states.values()) - _finished(self.states)

    @property
    def in_order(self) -> bool:
        return self.priority_violation is None and self.fifo_violation is None

    @property
    def ok(self) -> bool:
        """Every job succeeded and the claims kept priority order."""
        return self.succeeded == self.jobs and self.in_order


async def run_demo(
    chancy: Chancy,
    *,
    jobs: int = DEMO_JOBS_DEFAULT,
    concurrency: int = DEMO_CONCURRENCY_DEFAULT,
    console: Console | None = None,
    poll_interval: float = DEMO_POLL_INTERVAL_DEFAULT,
    stall_timeout: float = DEMO_STALL_TIMEOUT_DEFAULT,
) -> DemoReport:
    """Migrate, push ``jobs`` demo jobs, run them with ``concurrency``, and report.

    A live progress bar on ``console`` (default: a quiet one) follows the count of
    finished jobs, read from the database every ``poll_interval`` seconds. If no job
    finishes for ``stall_timeout`` seconds the worker is stopped and the report shows
    the jobs that did not finish.
    """
    console = console or Console(quiet=True)
    queue = f"{DEMO_QUEUE_PREFIX}{secrets.token_hex(4)}"
    database = describe(chancy.engine.url)
    await chancy.migrate()
    await delete_earlier_runs(chancy)
    console.print(f"pushing {jobs} jobs into queue [bold]{queue}[/] on {escape(database)}")
    started, wall_seconds, interrupted = time.monotonic(), 0.0, False
    with Progress(*_COLUMNS, console=console) as progress:
        try:
            await _push(chancy, queue, jobs, progress)
            started = time.monotonic()
            demo_queue = Queue(name=queue, concurrency=concurrency)
            async with Worker(chancy, queues=[demo_queue], allowed=[name_of(demo_job)]):
                await _follow(chancy, queue, jobs, progress, poll_interval, stall_timeout)
                wall_seconds = time.monotonic() - started
        except asyncio.CancelledError:  # Ctrl-C: the worker has stopped; report what ran
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
            wall_seconds, interrupted = time.monotonic() - started, True
    report = await _report(chancy, queue, jobs, concurrency, database, wall_seconds)
    return dataclasses.replace(report, interrupted=interrupted)


async def delete_earlier_runs(chancy: Chancy) -> None:
    """Delete the queues of earlier demo runs whose jobs have all finished, with their
    jobs: only the last run's stay, for ``chancy job show``. A run that was stopped
    before its jobs finished leaves its queue (``chancy queue delete NAME --force``)."""
    for info in await chancy.list_queues():
        if info.name.startswith(DEMO_QUEUE_PREFIX):
            states = await count_states(chancy, info.name)
            if _finished(states) == sum(states.values()):
                with contextlib.suppress(InvalidQueueError):  # another run's, meanwhile
                    await chancy.delete_queue(info.name, force=True)


def demo_jobs(count: int) -> list[Job]:
    """``count`` demo jobs with priorities drawn at random from :data:`DEMO_PRIORITIES`."""
    return [
        Job.from_func(
            demo_job,
            kwargs={"number": number, "work_ms": random.randint(0, DEMO_WORK_MS_MAX)},
            priority=random.choice(DEMO_PRIORITIES),
        )
        for number in range(count)
    ]


class _RateColumn(ProgressColumn):
    """Jobs per second so far, and the time left at that rate."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed
        if not elapsed or not task.completed or task.total is None:
            return Text("")
        rate = task.completed / elapsed
        left = datetime_module.timedelta(seconds=round((task.total - task.completed) / rate))
        return Text(f"{rate:.0f} jobs/s, {left} left")


_COLUMNS = (
    TextColumn("{task.description:<7}"),
    BarColumn(bar_width=20),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    _RateColumn(),
)


async def _push(chancy: Chancy, queue: str, jobs: int, progress: Progress) -> None:
    """Push ``jobs`` demo jobs in batches of :data:`DEMO_PUSH_BATCH`, showing progress."""
    task = progress.add_task("pushing", total=jobs)
    pending = demo_jobs(jobs)
    for start in range(0, jobs, DEMO_PUSH_BATCH):
        batch = pending[start : start + DEMO_PUSH_BATCH]
        await chancy.push_many(queue, batch, declare=start == 0)
        progress.advance(task, len(batch))


async def _follow(
    chancy: Chancy,
    queue: str,
    jobs: int,
    progress: Progress,
    poll_interval: float,
    stall_timeout: float,
) -> None:
    """Show a progress bar until all ``jobs`` have finished, or none finished for
    ``stall_timeout`` seconds."""
    task = progress.add_task("running", total=jobs)
    finished, last_change = 0, time.monotonic()
    while finished < jobs and time.monotonic() - last_change < stall_timeout:
        await asyncio.sleep(poll_interval)
        done = _finished(await count_states(chancy, queue))
        if done != finished:
            finished, last_change = done, time.monotonic()
            progress.update(task, completed=finished)


def _finished(states: Mapping[str, int]) -> int:
    return sum(count for state, count in states.items() if state in FINISHED_STATES)


async def count_states(chancy: Chancy, queue: str) -> dict[str, int]:
    """How many jobs of ``queue`` are in each state."""
    async with chancy.engine.connect() as connection:
        return await JobRepository().count_by_state(connection, queue)


async def _report(
    chancy: Chancy, queue: str, jobs: int, concurrency: int, database: str, wall_seconds: float
) -> DemoReport:
    async with chancy.engine.connect() as connection:
        rows = await JobRepository().timeline(connection, queue)
    started = [StartedJob(row.id, row.priority, row.started_at) for row in rows if row.started_at]
    completed = [row.completed_at for row in rows if row.completed_at is not None]
    return DemoReport(
        database=database,
        queue=queue,
        jobs=jobs,
        concurrency=concurrency,
        states=await count_states(chancy, queue),
        claims=len({job.started_at for job in started}),
        wall_seconds=wall_seconds,
        drain_seconds=_drain_seconds(started, completed),
        priority_violation=find_order_violation(started, lambda job: (job.priority,)),
        fifo_violation=find_order_violation(started, lambda job: (job.priority, job.id)),
        first_job_id=min((row.id for row in rows), default=None),
    )


def _drain_seconds(started: Sequence[StartedJob], completed: Sequence[datetime]) -> float:
    """Seconds from the first claim to the last completion (the database's clock)."""
    if not started or not completed:
        return 0.0
    return (max(completed) - min(job.started_at for job in started)).total_seconds()


def find_order_violation(
    started: Sequence[StartedJob], key: Callable[[StartedJob], tuple[int, ...]]
) -> OrderViolation | None:
    """The first pair of jobs where one started strictly before the other although its
    ``key`` is greater; None if the claims kept ``key`` order."""
    by_start = sorted(started, key=lambda job: job.started_at)
    highest: StartedJob | None = None
    for _moment, group in groupby(by_start, key=lambda job: job.started_at):
        claim = list(group)
        lowest = min(claim, key=key)
        if highest is not None and key(highest) > key(lowest):
            return OrderViolation(earlier=highest, later=lowest)
        top = max(claim, key=key)
        if highest is None or key(top) > key(highest):
            highest = top
    return None


def report_table(report: DemoReport) -> Table:
    """The report as a two-column table: what was measured, and the figure. Each figure
    fits 80 columns (the database is named above the table, as the run starts); an
    order violation names its two jobs in full."""
    table = Table(title=f"chancy demo: {report.jobs} jobs")
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", overflow="fold")
    table.add_row("queue", Text(report.queue))
    table.add_row("concurrency", str(report.concurrency))
    for state in JobState:
        if state.value in report.states:
            table.add_row(f"jobs {state.value}", str(report.states[state.value]))
    table.add_row("wall time", f"{report.wall_seconds:.2f} s")
    table.add_row("drain time", f"{report.drain_seconds:.2f} s")
    table.add_row("throughput", f"{report.throughput:.0f} jobs/s")
    table.add_row("priorities ran in order", _verdict(report.priority_violation))
    table.add_row("equal priorities in push order", _verdict(report.fifo_violation))
    return table


REPORT_NOTES = (
    "wall time: from the worker's start until the last job finished",
    "drain time: from the first claim to the last completion (the database's clock)",
)
"""What the report's times measure, printed below its table."""


def _verdict(violation: OrderViolation | None) -> Text:
    if violation is None:
        return Text("yes", style="green")
    return Text.assemble(("no", "red"), f": {violation}")
