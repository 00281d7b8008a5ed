"""The job context: complete_in in the application's transaction, Snooze, Cancel and
progress, on every executor."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy import Cancel, Chancy, Job, JobState, Queue, Snooze, Worker
from chancy.cli import job_as_json
from chancy.context import JobContext
from chancy.repository import ClaimRepository
from chancy.testing import run_job
from chancy.testing._run import RUN_JOB_ID
from chancy.worker.reports import JobReports
from chancy.worker.settings import WorkerSettings
from tests.support import context_tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ["asyncio", "threads", "processes"]
FAST = WorkerSettings(promote_interval=0.05, rescue_interval=0.2, lease_seconds=2)


@pytest.fixture
async def db(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.execute(context_tasks.CREATE_CHARGES)
    yield connection
    await connection.close()


@pytest.fixture
def context_dsn(database_url: URL, monkeypatch: pytest.MonkeyPatch) -> str:
    dsn = database_url.render_as_string(hide_password=False)
    monkeypatch.setenv("CONTEXT_DSN", dsn)
    return dsn


def app(database_url: URL, executor: str) -> Chancy:
    queue = Queue(name="default", concurrency=2, executor=executor, polling_interval=0.1)  # type: ignore[arg-type]
    return Chancy(database_url, queues=[queue])


async def charges(db: asyncpg.Connection, job_id: int) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT attempt, note FROM charges WHERE job_id = $1 ORDER BY attempt", job_id
    )
    return [(row["attempt"], row["note"]) for row in rows]


def start_worker(executor: str, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A `chancy worker` process running the queue of context_tasks on ``executor``."""
    env = {**os.environ, "CONTEXT_EXECUTOR": executor, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "chancy", "worker", "--app"]
    command += ["tests.support.context_tasks:chancy", "--lease-seconds", "1"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    started.append(process)
    return process


@pytest.fixture
def worker_process(context_dsn: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_job_completed_in_its_transaction_stays_succeeded_when_its_worker_is_killed(
    executor: str,
    database_url: URL,
    db: asyncpg.Connection,
    worker_process: list[subprocess.Popen[bytes]],
    context_dsn: str,
) -> None:
    job = Job.from_func(context_tasks.BY_EXECUTOR[executor]["hang"], kwargs={"dsn": context_dsn})
    job = job.with_max_attempts(3)
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(job)
        process = start_worker(executor, worker_process)

        async def succeeded() -> bool:
            stored = await chancy.get_job(ref)
            return stored is not None and stored.state is JobState.SUCCEEDED

        await until_async(succeeded, timeout=60, what="the job completed itself")
        process.send_signal(signal.SIGKILL)  # it still runs the job: nothing reported
        process.wait()
        # Another worker, with the rescuer: the job is not running, so nothing is rescued.
        async with Worker(chancy, settings=FAST) as worker:
            await worker.stop()  # after a start: its leader services ran once
        stored = await chancy.get_job(ref)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.result) == (JobState.SUCCEEDED, 1, "charged")
    assert stored.errors == ()
    assert await charges(db, ref.id) == [(1, "charged")]


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_rolled_back_completion_changes_nothing_and_the_job_is_retried(
    executor: str, database_url: URL, db: asyncpg.Connection, context_dsn: str
) -> None:
    job = Job.from_func(context_tasks.BY_EXECUTOR[executor]["fail"], kwargs={"dsn": context_dsn})
    job = job.with_max_attempts(2)
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(job.with_backoff(0))
        async with Worker(chancy, settings=FAST):
            done = await chancy.wait_for_job(ref, timeout=60)
    assert (done.state, done.attempts, done.result) == (JobState.SUCCEEDED, 2, "second")
    assert [error["message"] for error in done.errors] == ["the card was declined after all"]
    assert await charges(db, ref.id) == []


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_stale_attempts_complete_in_raises_and_writes_nothing(
    executor: str, database_url: URL, db: asyncpg.Connection, context_dsn: str
) -> None:
    job = Job.from_func(
        context_tasks.BY_EXECUTOR[executor]["takeover"], kwargs={"dsn": context_dsn}
    )
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy, settings=WorkerSettings(lease_seconds=60)):

            async def refused() -> bool:
                return bool(await charges(db, ref.id))

            await until_async(refused, timeout=60, what="the refusal")
        stored = await chancy.get_job(ref)
    assert await charges(db, ref.id) == [(1, "refused")]
    assert stored is not None
    assert stored.state is not JobState.SUCCEEDED  # the worker's own outcome was fenced off too


async def test_a_job_that_completed_itself_and_returned_counts_as_fine(
    database_url: URL, db: asyncpg.Connection, context_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(Job.from_func(complete_and_return, kwargs={"dsn": context_dsn}))
        async with Worker(chancy) as worker:
            done = await chancy.wait_for_job(ref, timeout=30)
            completer = worker._completer
            assert completer is not None

            async def judged() -> bool:
                return completer.completed_in_transaction == 1

            await until_async(judged, timeout=30, what="the refused outcome judged")
            assert completer.stale_rejected == 0
    assert (done.state, done.result) == (JobState.SUCCEEDED, "from complete_in")
    assert await charges(db, ref.id) == [(1, "charged")]
    assert "not written" not in caplog.text


async def complete_and_return(dsn: str, *, ctx: JobContext) -> str:
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(context_tasks._async_engine(dsn)) as session, session.begin():
        await session.execute(context_tasks._INSERT, context_tasks._row(ctx))
        await ctx.complete_in(session, result="from complete_in")
    return "from the return"


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_a_snooze_uses_no_attempt(executor: str, database_url: URL) -> None:
    job = Job.from_func(context_tasks.snooze_until, kwargs={"times": 3})
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy, settings=FAST):
            done = await chancy.wait_for_job(ref, timeout=60)
    assert (done.state, done.result, done.attempts, done.snoozes) == (
        JobState.SUCCEEDED,
        1,
        1,
        3,
    )
    assert done.errors == ()


async def test_a_job_snoozing_past_max_snoozes_fails_saying_so(database_url: URL) -> None:
    job = Job.from_func(context_tasks.snooze_until, kwargs={"times": 5}).with_max_snoozes(2)
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(job.with_max_attempts(3))
        async with Worker(chancy, settings=FAST):
            done = await chancy.wait_for_job(ref, timeout=60)
    assert (done.state, done.attempts, done.snoozes) == (JobState.FAILED, 1, 2)
    (error,) = done.errors
    assert error["type"] == "TooManySnoozes"
    assert "max_snoozes=2" in error["message"]
    assert "with_max_snoozes" in error["message"]


@pytest.mark.parametrize(
    ("seconds", "problem"),
    [
        (-1, "Snooze(-1)"),
        ("nan", "Snooze(nan)"),
        ("inf", "Snooze(inf)"),
        (1e12, "Snooze(1000000000000.0)"),
        ("5", "not str"),
    ],
)
async def test_a_snooze_of_bad_seconds_fails_the_job_naming_the_problem(
    seconds: object, problem: str, database_url: URL
) -> None:
    job = Job.from_func(context_tasks.snooze_for, kwargs={"seconds": seconds})
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert done.state is JobState.FAILED
    assert problem in done.errors[0]["message"]


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_cancel_ends_the_job_cancelled_with_its_reason_and_no_retry(
    executor: str, database_url: URL
) -> None:
    job = Job.from_func(context_tasks.cancel_with, kwargs={"reason": "the order was withdrawn"})
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(job.with_max_attempts(3))
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert (done.state, done.attempts) == (JobState.CANCELLED, 1)
    (error,) = done.errors
    assert (error["type"], error["message"]) == ("Cancel", "the order was withdrawn")


async def test_cancel_without_a_str_reason_fails_the_job(database_url: URL) -> None:
    job = Job.from_func(context_tasks.cancel_with, kwargs={"reason": 42})
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert done.state is JobState.FAILED
    assert "Cancel(reason) takes a str, not int" in done.errors[0]["message"]


@pytest.mark.parametrize("executor", EXECUTORS)
async def test_progress_lands_on_the_job_and_shows_in_get_job_and_job_show(
    executor: str, database_url: URL
) -> None:
    fn = context_tasks.BY_EXECUTOR[executor]["progress"]
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(Job.from_func(fn, kwargs={"steps": 500}))
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert done.state is JobState.SUCCEEDED
    assert (done.progress, done.progress_message) == (1.0, "rows 500/500")
    assert done.progress_at is not None
    shown = job_as_json(done)
    assert (shown["progress"], shown["progress_message"]) == (1.0, "rows 500/500")


@pytest.mark.parametrize(
    ("fraction", "message", "problem"),
    [
        (1.5, None, "progress 1.5 is not a fraction"),
        ("nan", None, "progress nan is not a fraction"),
        ("half", None, "not str"),
        (0.5, "NUL", "NUL"),
        (0.5, "x" * 5000, "at most 1000"),
        (0.5, 7, "must be a str or None"),
    ],
)
async def test_bad_progress_fails_the_job_naming_the_problem(
    fraction: object, message: object, problem: str, database_url: URL
) -> None:
    job = Job.from_func(
        context_tasks.report_bad_progress, kwargs={"fraction": fraction, "message": message}
    )
    async with app(database_url, "threads") as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert done.state is JobState.FAILED
    assert problem in done.errors[0]["message"]
    assert done.progress is None


async def test_progress_is_written_at_most_once_an_interval_and_the_latest_at_the_end(
    chancy: Chancy,
) -> None:
    await chancy.push(Job.from_func(context_tasks.report_progress, kwargs={"steps": 1}))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    frozen = 100.0
    reports = JobReports(chancy.engine, lambda job_id: True, clock=lambda: frozen)
    for step in range(1, 201):
        reports.progress(job, step / 200, f"step {step}")
        if step == 1:
            await until_async(_written(reports, 1), timeout=10, what="the first write")
    assert reports.writes == 1  # the clock stands still: no second write before the end
    await reports.end(job.id)
    assert reports.writes == 2
    stored = await chancy.get_job(job.id)
    assert stored is not None
    assert (stored.progress, stored.progress_message) == (1.0, "step 200")


async def test_a_stale_attempts_progress_changes_nothing(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(context_tasks.report_progress, kwargs={"steps": 1}))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    reports = JobReports(chancy.engine, lambda job_id: True)
    stale = dataclasses.replace(job, fence=(job.fence or 0) + 1)
    reports.progress(stale, 0.5, "from a stale attempt")
    await reports.end(job.id)
    assert reports.writes == 0
    stored = await chancy.get_job(job.id)
    assert stored is not None
    assert stored.progress is None


def _written(reports: JobReports, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return reports.writes >= count

    return check


async def test_run_job_gives_a_context_that_writes_nothing_of_chancys(
    db: asyncpg.Connection, context_dsn: str
) -> None:
    result = await run_job(complete_and_return, dsn=context_dsn)
    assert result == "from complete_in"  # as a worker would store it
    assert await charges(db, RUN_JOB_ID) == [(1, "charged")]  # the app's own write ran


async def test_run_job_raises_snooze_cancel_and_bad_progress_as_raised() -> None:
    with pytest.raises(Snooze):
        await run_job(context_tasks.snooze_until, times=1)
    with pytest.raises(Cancel, match="withdrawn"):
        await run_job(context_tasks.cancel_with, reason="withdrawn")
    with pytest.raises(ValueError, match="not a fraction"):
        await run_job(context_tasks.report_bad_progress, fraction=2, message=None)
    assert await run_job(context_tasks.report_progress, steps=3) == "done"
