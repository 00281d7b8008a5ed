"""Hostile and unlucky uses of the job context (complete_in, Snooze, Cancel, progress)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import Cancel, Chancy, Job, JobNotRunningError, JobState, Queue, Snooze, Worker
from chancy.context import JobContext
from chancy.errors import SchemaError
from chancy.repository import ClaimRepository
from chancy.worker.reports import JobReports
from chancy.worker.settings import WorkerSettings
from tests.support import context_tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

FAST = WorkerSettings(promote_interval=0.05, rescue_interval=0.2, lease_seconds=2)


@pytest.fixture
async def db(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.execute(context_tasks.CREATE_CHARGES)
    yield connection
    await connection.close()


@pytest.fixture
def dsn(database_url: URL) -> str:
    return database_url.render_as_string(hide_password=False)


def app(database_url: URL, executor: str = "asyncio", concurrency: int = 2) -> Chancy:
    queue = Queue(
        name="default",
        concurrency=concurrency,
        executor=executor,  # type: ignore[arg-type]
        polling_interval=0.1,
    )
    return Chancy(database_url, queues=[queue])


async def charges(db: asyncpg.Connection, job_id: int) -> list[tuple[int, str]]:
    rows = await db.fetch(
        "SELECT attempt, note FROM charges WHERE job_id = $1 ORDER BY attempt, note", job_id
    )
    return [(row["attempt"], row["note"]) for row in rows]


# --- jobs -------------------------------------------------------------------------------

_HELD: list[AsyncConnection] = []


async def complete_and_leave_open(dsn: str, *, ctx: JobContext) -> str:
    """complete_in in a transaction the job leaves open after it returns (kept in a
    global: an app bug, or a connection handed to something that outlives the job)."""
    connection = await context_tasks._async_engine(dsn).connect()
    await connection.begin()
    await ctx.complete_in(connection, result="held")
    _HELD.append(connection)
    return "returned"


async def quick() -> str:
    return "quick"


async def count_then_sleep(dsn: str, seconds: float, *, ctx: JobContext) -> str:
    """Record each run (committed at once), then sleep."""
    async with context_tasks._async_engine(dsn).begin() as connection:
        await connection.execute(context_tasks._INSERT, context_tasks._row(ctx, "ran"))
    await asyncio.sleep(seconds)
    return "slept"


def complete_then_exit(dsn: str, *, ctx: JobContext) -> None:
    """Complete in a committed transaction, then end the child process at once."""
    with Session(context_tasks._engine(dsn)) as session, session.begin():
        session.execute(context_tasks._INSERT, context_tasks._row(ctx))
        ctx.complete_in_sync(session, result="charged")
    os._exit(3)


async def complete_twice(dsn: str, *, ctx: JobContext) -> str:
    """complete_in twice in one transaction: the second must refuse."""
    async with AsyncSession(context_tasks._async_engine(dsn)) as session, session.begin():
        await session.execute(context_tasks._INSERT, context_tasks._row(ctx))
        await ctx.complete_in(session, result="first")
        try:
            await ctx.complete_in(session, result="second")
        except JobNotRunningError:
            return "refused"
    return "not refused"


def progress_with_sql(message: str, *, ctx: JobContext) -> str:
    ctx.progress_sync(0.5, message)
    return "done"


def cancel_hostile(kind: str) -> None:
    reasons = {
        "nul": "before\x00after",
        "surrogate": "bad \udcff byte",
        "huge": "x" * 10_000_000,
    }
    raise Cancel(reasons[kind])


# --- complete_in left open ---------------------------------------------------------------


async def test_a_complete_in_transaction_left_open_does_not_hold_back_other_jobs_outcomes(
    database_url: URL, db: asyncpg.Connection, dsn: str
) -> None:
    _HELD.clear()
    try:
        async with app(database_url) as chancy, Worker(chancy, settings=FAST):
            held = await chancy.push(Job.from_func(complete_and_leave_open, kwargs={"dsn": dsn}))

            async def left_open() -> bool:
                return bool(_HELD)

            await until_async(left_open, timeout=30, what="the job left its transaction open")
            other = await chancy.push(Job.from_func(quick))
            done = await chancy.wait_for_job(other, timeout=20)
            assert (done.state, done.result, done.errors) == (JobState.SUCCEEDED, "quick", ())
            assert held.id != other.id
    finally:
        for connection in _HELD:
            await connection.rollback()
            await connection.close()
        _HELD.clear()


async def test_a_complete_in_transaction_left_open_does_not_let_other_jobs_run_twice(
    database_url: URL, db: asyncpg.Connection, dsn: str
) -> None:
    _HELD.clear()
    try:
        async with app(database_url) as chancy, Worker(chancy, settings=FAST):
            await chancy.push(Job.from_func(complete_and_leave_open, kwargs={"dsn": dsn}))

            async def left_open() -> bool:
                return bool(_HELD)

            await until_async(left_open, timeout=30, what="the job left its transaction open")
            sleeper = await chancy.push(
                Job.from_func(
                    count_then_sleep, kwargs={"dsn": dsn, "seconds": 8}
                ).with_max_attempts(3)
            )
            async with Worker(chancy, settings=FAST):  # a second worker, which may rescue
                done = await chancy.wait_for_job(sleeper, timeout=60)
        ran = await charges(db, sleeper.id)
        # It ran once, to success, with no lease lost on the way.
        assert (done.state, done.errors, ran) == (JobState.SUCCEEDED, (), [(1, "ran")])
    finally:
        for connection in _HELD:
            await connection.rollback()
            await connection.close()
        _HELD.clear()


# --- crashes ------------------------------------------------------------------------------


async def test_a_child_exiting_right_after_complete_in_leaves_the_job_succeeded(
    database_url: URL, db: asyncpg.Connection, dsn: str
) -> None:
    job = Job.from_func(complete_then_exit, kwargs={"dsn": dsn}).with_max_attempts(3)
    async with app(database_url, "processes") as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy, settings=FAST) as worker:
            done = await chancy.wait_for_job(ref, timeout=60)
            completer = worker._completer
            assert completer is not None

            async def judged() -> bool:
                return completer.completed_in_transaction == 1

            await until_async(judged, timeout=30, what="the refused outcome judged fine")
            assert completer.stale_rejected == 0
    assert (done.state, done.attempts, done.result) == (JobState.SUCCEEDED, 1, "charged")
    assert done.errors == ()
    assert await charges(db, ref.id) == [(1, "charged")]


# --- misuse -------------------------------------------------------------------------------


async def test_complete_in_twice_in_one_transaction_refuses_the_second(
    database_url: URL, db: asyncpg.Connection, dsn: str
) -> None:
    async with app(database_url) as chancy:
        ref = await chancy.push(Job.from_func(complete_twice, kwargs={"dsn": dsn}))
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    # The function caught the refusal and committed: the first completion stands.
    assert (done.state, done.result) == (JobState.SUCCEEDED, "first")
    assert await charges(db, ref.id) == [(1, "charged")]


async def test_complete_in_on_a_database_without_chancy_names_the_problem(
    chancy: Chancy, empty_database_url: URL
) -> None:
    await chancy.push(Job.from_func(quick))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    ctx = JobContext(job, context_tasks_silent())
    other = create_async_engine(empty_database_url)
    try:
        async with AsyncSession(other) as session:
            with pytest.raises(SchemaError, match="migrate") as raised:
                async with session.begin():
                    await ctx.complete_in(session)
    finally:
        await other.dispose()
    message = str(raised.value)
    password = empty_database_url.password
    assert not password or password not in message


def context_tasks_silent() -> Any:
    from chancy.context import SILENT

    return SILENT


async def test_a_ctx_kept_after_its_job_ended_is_refused(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(quick))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    ctx = JobContext(job, context_tasks_silent())
    assert await chancy.cancel_job(job.id)
    async with AsyncSession(chancy.engine) as session:
        with pytest.raises(JobNotRunningError, match="no longer holds its job"):
            async with session.begin():
                await ctx.complete_in(session, result="late")
    stored = await chancy.get_job(job.id)
    assert stored is not None
    assert stored.state is JobState.CANCELLED
    assert stored.result is None


# --- progress -------------------------------------------------------------------------------


async def test_a_stale_attempts_report_does_not_drop_the_current_attempts_latest_progress(
    chancy: Chancy,
) -> None:
    await chancy.push(Job.from_func(context_tasks.report_progress, kwargs={"steps": 1}))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    frozen = 100.0
    # As the worker answers: only the attempt it runs now (this fence) is running.
    reports = JobReports(
        chancy.engine, lambda job_id, fence: fence == job.fence, clock=lambda: frozen
    )
    reports.progress(job, 0.5, "current, first")

    async def first_written() -> bool:
        return reports.writes >= 1

    await until_async(first_written, timeout=10, what="the first write")
    reports.progress(job, 0.9, "current, latest")  # held: the interval has not passed
    stale = dataclasses.replace(job, fence=(job.fence or 0) - 1)
    reports.progress(stale, 0.1, "stale")
    await reports.end(job.id)  # the outcome would follow: the latest must be stored now
    stored = await chancy.get_job(job.id)
    assert stored is not None
    assert (stored.progress, stored.progress_message) == (0.9, "current, latest")


async def test_a_progress_message_is_stored_verbatim_not_as_sql(database_url: URL) -> None:
    message = "'); DROP TABLE chancy_jobs; -- $1 %s :p_id \\"
    async with app(database_url, "threads") as chancy:
        ref = await chancy.push(Job.from_func(progress_with_sql, kwargs={"message": message}))
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert (done.state, done.progress, done.progress_message) == (JobState.SUCCEEDED, 0.5, message)


# --- Cancel and Snooze ---------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["asyncio", "processes"])
@pytest.mark.parametrize("kind", ["nul", "surrogate", "huge"])
async def test_a_hostile_cancel_reason_ends_the_job_cancelled(
    kind: str, executor: str, database_url: URL
) -> None:
    async with app(database_url, executor) as chancy:
        ref = await chancy.push(Job.from_func(cancel_hostile, kwargs={"kind": kind}))
        async with Worker(chancy):
            done = await chancy.wait_for_job(ref, timeout=60)
    assert (done.state, done.attempts) == (JobState.CANCELLED, 1)
    (error,) = done.errors
    assert error["type"] == "Cancel"
    assert 0 < len(error["message"]) <= 10_100
    if kind == "nul":
        assert "\x00" not in error["message"]
        assert "before" in error["message"]


async def test_snooze_on_the_last_attempt_keeps_it_and_its_priority(database_url: URL) -> None:
    job = Job.from_func(context_tasks.snooze_until, kwargs={"times": 2}).with_priority(7)
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(job.with_unique_key("snoozer"))
        async with Worker(chancy, settings=FAST):
            done = await chancy.wait_for_job(ref, timeout=60)
            again = await chancy.push(job.with_unique_key("snoozer"))
    assert (done.state, done.attempts, done.max_attempts, done.snoozes) == (
        JobState.SUCCEEDED,
        1,
        1,
        2,
    )
    assert done.priority == 7
    assert again.id != ref.id  # the key is free once the job ended, not before


async def test_max_snoozes_zero_fails_the_first_snooze(database_url: URL) -> None:
    job = Job.from_func(context_tasks.snooze_until, kwargs={"times": 1}).with_max_snoozes(0)
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(job)
        async with Worker(chancy, settings=FAST):
            done = await chancy.wait_for_job(ref, timeout=30)
    assert (done.state, done.snoozes) == (JobState.FAILED, 0)
    assert done.errors[0]["type"] == "TooManySnoozes"


def _unused() -> tuple[Any, ...]:
    return (Snooze,)


async def test_a_late_complete_in_of_an_ended_run_leaves_no_mark(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(quick))
    async with chancy.engine.begin() as connection:
        (job,) = await ClaimRepository().claim_available(connection, "default", 1, "test")
    running = {job.id}
    reports = JobReports(chancy.engine, lambda job_id, fence: job_id in running)
    reports.progress(job, 0.5, None)
    await reports.end(job.id)
    running.clear()  # the run ended; its context lives on in a global
    reports.completing(job)
    assert not reports.is_completing(job.id)
    assert not reports.has(job.id)


async def test_a_hostile_cancel_reason_is_logged_escaped_and_cut(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    # A log handler writing UTF-8 fails on a lone surrogate: the worker's line about the
    # cancel quotes the reason escaped, and no more than 500 characters of it.
    caplog.set_level(logging.INFO, logger="chancy")
    async with app(database_url, "asyncio") as chancy:
        ref = await chancy.push(Job.from_func(cancel_hostile, kwargs={"kind": "surrogate"}))
        async with Worker(chancy):
            await chancy.wait_for_job(ref, timeout=60)
    lines = [r.getMessage() for r in caplog.records if f"job {ref.id} " in r.getMessage()]
    assert lines
    for line in lines:
        line.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in line
        assert len(line) < 1_000
