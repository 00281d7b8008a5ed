"""chancy.testing: assert_pushed and friends, drain and run_job, on real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from chancy import Job, QueuedJob
from chancy.app import Chancy
from chancy.errors import (
    ChancyError,
    FunctionNotAllowedError,
    InvalidFunctionError,
    ResultNotStorableError,
    UnknownQueueError,
)
from chancy.queue import Queue
from chancy.sync import push as sync_push
from chancy.testing import assert_pushed, drain, pushed_jobs, refute_pushed, run_job
from chancy.testing import sync as testing_sync
from chancy.testing._loop import run_sync
from chancy.testing.databases import DatabasePool, asyncpg_dsn
from tests.support import drained
from tests.support.drained import RAN, echo, fail, push_child, record, record_sync
from tests.support.waiting import until_async

pytestmark = pytest.mark.usefixtures("fresh_records")


def job(name: str, **changes: object) -> Job:
    made = Job.from_func(record, kwargs={"name": name})
    return made.with_priority(changes["priority"]) if "priority" in changes else made  # type: ignore[arg-type]


# assert_pushed, refute_pushed, pushed_jobs -------------------------------------------


async def test_assert_pushed_sees_the_uncommitted_session_and_chancy_does_not(
    chancy: Chancy,
) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        pushed = Job.from_func(drained.record_kw, kwargs={"name": "a", "n": 1})
        await chancy.push(pushed, session=session)
        found = await assert_pushed(session, func=drained.record_kw, kwargs={"name": "a"})
        assert [dict(j.kwargs) for j in found] == [{"name": "a", "n": 1}]
        await refute_pushed(chancy, func=drained.record_kw)
        await session.rollback()
    await refute_pushed(chancy, func=drained.record_kw)


async def test_filters_match_func_by_name_kwargs_as_a_subset_and_the_rest_exactly(
    chancy: Chancy,
) -> None:
    await chancy.push(Job.from_func(drained.push_child, kwargs={"name": "x"}).with_priority(5))
    await chancy.push("other", Job.from_func(record, kwargs={"name": "y"}))
    assert len(await pushed_jobs(chancy)) == 2
    (found,) = await assert_pushed(chancy, func="tests.support.drained.push_child", priority=5)
    assert isinstance(found, QueuedJob)
    await assert_pushed(chancy, queue="other", kwargs={"name": "y"}, state="pending", count=1)
    await refute_pushed(chancy, func=record, queue="default")
    assert await pushed_jobs(chancy, kwargs={"name": "nobody"}) == []


async def test_a_miss_lists_what_was_pushed_closest_first_with_the_differing_keys(
    chancy: Chancy,
) -> None:
    await chancy.push(Job.from_func(fail, kwargs={"name": "far"}))
    await chancy.push(Job.from_func(record, kwargs={"name": "ada"}).with_priority(3))
    with pytest.raises(AssertionError) as caught:
        await assert_pushed(chancy, func=record, kwargs={"name": "bob"}, priority=3)
    message = str(caught.value)
    assert message.startswith(
        "no job matching func='tests.support.drained.record', kwargs={'name': 'bob'}, "
        "priority=3 was pushed; pushed (2 jobs, closest first):"
    )
    lines = message.splitlines()
    assert "func='tests.support.drained.record' kwargs={'name': 'ada'}" in lines[1]
    assert lines[2].strip() == "differs: kwargs.name: wanted 'bob', got 'ada'"
    assert "tests.support.drained.fail" in lines[3]
    assert (
        "func: wanted 'tests.support.drained.record', got 'tests.support.drained.fail'" in lines[4]
    )


async def test_count_and_refute_say_what_they_found(chancy: Chancy) -> None:
    await chancy.push_many([job("a"), job("b")])
    with pytest.raises(AssertionError, match=r"expected 3 jobs matching func=.*, found 2"):
        await assert_pushed(chancy, func=record, count=3)
    with pytest.raises(AssertionError, match=r"expected no job matching .*found 2:\n  job \d+"):
        await refute_pushed(chancy, func=record)
    await assert_pushed(chancy, func=fail, count=0)


async def test_bad_use_fails_clearly(chancy: Chancy) -> None:
    connection = await chancy.engine.connect()
    await connection.close()
    with pytest.raises(ChancyError, match="closed AsyncConnection"):
        await assert_pushed(connection, func=record)
    with pytest.raises(ChancyError, match="not a job state"):
        await assert_pushed(chancy, state="done")
    with pytest.raises(ChancyError, match="a Chancy, an AsyncSession or an AsyncConnection"):
        await pushed_jobs("postgresql://x")  # type: ignore[arg-type]
    with pytest.raises(ChancyError, match="count= takes"):
        await assert_pushed(chancy, count=-1)


# drain ---------------------------------------------------------------------------------


async def test_drain_runs_in_priority_order_then_arrival_across_queues(chancy: Chancy) -> None:
    await chancy.push(job("late", priority=5))
    await chancy.push("other", job("first", priority=-1))
    await chancy.push(job("second"))
    await chancy.push("other", job("third"))
    result = await drain(chancy)
    assert RAN == ["first", "second", "third", "late"]
    assert (result.succeeded, result.failed, result.retried, result.cancelled) == (4, 0, 0, 0)
    assert [j.state for j in result.jobs] == ["succeeded"] * 4
    assert [j.result for j in result.jobs] == ["first", "second", "third", "late"]
    await refute_pushed(chancy, state="running")


async def test_drain_of_one_queue_leaves_the_others(chancy: Chancy) -> None:
    await chancy.push(job("a"))
    await chancy.push("other", job("b"))
    assert (await drain(chancy, queue="other")).succeeded == 1
    assert RAN == ["b"]
    await assert_pushed(chancy, kwargs={"name": "a"}, state="pending")


async def test_recursive_drain_runs_what_jobs_push_and_otherwise_leaves_it(
    chancy: Chancy,
) -> None:
    drained.PUSHER = chancy
    await chancy.push(Job.from_func(push_child, kwargs={"name": "parent"}))
    assert (await drain(chancy, recursive=False)).succeeded == 1
    (child,) = await assert_pushed(chancy, kwargs={"name": "parent-child"}, state="pending")
    assert child.attempts == 0
    assert child.max_attempts == 1
    assert child.started_at is None
    assert (await drain(chancy)).succeeded == 1
    assert RAN == ["parent", "parent-child"]
    await chancy.push(Job.from_func(push_child, kwargs={"name": "again"}))
    assert (await drain(chancy)).succeeded == 2


async def test_retries_are_recorded_and_with_scheduled_runs_them_now(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(fail, kwargs={"name": "f"}, max_attempts=3))
    first = await drain(chancy)
    assert (first.retried, first.failed) == (1, 0)
    assert first.jobs[0].state == "retrying"
    assert len(first.jobs[0].errors) == 1
    assert (await drain(chancy)).ran == 0  # its retry is not due yet
    second = await drain(chancy, with_scheduled=True)
    assert (second.retried, second.failed) == (1, 1)
    assert second.jobs[0].state == "failed"
    assert second.jobs[0].attempts == 3


async def test_with_scheduled_runs_future_jobs_and_limit_stops(chancy: Chancy) -> None:
    later = datetime.now(UTC) + timedelta(days=1)
    await chancy.push(job("future").with_scheduled_at(later))
    await chancy.push_many([job("a"), job("b"), job("c")])
    assert (await drain(chancy, limit=2)).succeeded == 2
    assert RAN == ["a", "b"]
    assert (await drain(chancy)).succeeded == 1
    assert (await drain(chancy, with_scheduled=True)).succeeded == 1
    assert RAN == ["a", "b", "c", "future"]


async def test_raise_errors_stops_at_the_first_failure_after_writing_it(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(fail, kwargs={"name": "boom"}))
    await chancy.push(job("after"))
    with pytest.raises(ValueError, match="boom failed"):
        await drain(chancy, raise_errors=True)
    assert RAN == ["boom"]
    await assert_pushed(chancy, func=fail, state="failed")
    await assert_pushed(chancy, func=record, state="pending")


async def test_drain_honours_a_paused_queue_and_a_rate_limit(chancy: Chancy) -> None:
    await chancy.declare(Queue(name="limited", rate_limit=1, rate_period=timedelta(hours=1)))
    await chancy.push_many("limited", [job("one"), job("two")])
    await chancy.push("other", job("paused"))
    await chancy.pause_queue("other")
    result = await drain(chancy)
    assert result.succeeded == 1
    assert RAN == ["one"]
    await assert_pushed(chancy, kwargs={"name": "two"}, state="pending")
    await assert_pushed(chancy, kwargs={"name": "paused"}, state="pending")


async def test_an_interrupted_drain_gives_its_job_back(chancy: Chancy) -> None:
    reference = await chancy.push(Job.from_func(drained.sleep_long, kwargs={"name": "s"}))
    task = asyncio.create_task(drain(chancy))
    await until_async(lambda: asyncio.sleep(0.01, "s" in RAN), what="the job to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await chancy.get_job(reference)
    assert stored is not None
    assert stored.state == "pending"


async def test_a_job_that_exits_fails_and_the_drain_goes_on(chancy: Chancy) -> None:
    await chancy.push(Job.from_func(drained.exits, kwargs={"name": "x"}))
    await chancy.push(job("next"))
    result = await drain(chancy)
    assert (result.failed, result.succeeded) == (1, 1)
    await refute_pushed(chancy, state="running")


async def test_drain_of_an_undeclared_queue_says_which_are(chancy: Chancy) -> None:
    with pytest.raises(UnknownQueueError, match="did you mean 'other'"):
        await drain(chancy, queue="othr")


async def test_drain_checks_the_allowed_functions(database_url: URL) -> None:
    async with Chancy(database_url, allowed=["myapp.*"]) as restricted:
        await restricted.push(job("x"))
        result = await drain(restricted)
    assert result.failed == 1
    assert RAN == []
    assert result.jobs[0].errors[0]["type"] == "FunctionNotAllowedError"


# run_job ---------------------------------------------------------------------------------


async def test_run_job_runs_as_a_worker_would() -> None:
    assert await run_job(record, name="a") == "a"
    assert await run_job(echo, value=(1, {"k": (2,)})) == [1, {"k": [2]}]
    assert await run_job(Job.from_func(record_sync, kwargs={"name": "s"})) == "s"
    seen = await run_job(drained.whoami)
    assert seen == {"id": 0, "attempts": 1, "kwargs": {}}
    with pytest.raises(ValueError, match="x failed"):
        await run_job(fail, name="x")
    assert RAN == ["a", "s", "x"]


async def test_run_job_refuses_what_a_worker_would_refuse() -> None:
    with pytest.raises(InvalidFunctionError):
        await run_job(lambda: None)
    with pytest.raises(FunctionNotAllowedError):
        await run_job(record, allowed=["myapp.*"], name="a")
    with pytest.raises(ResultNotStorableError, match="cannot be stored as JSON"):
        await run_job(drained.unstorable)
    with pytest.raises(ChancyError, match="takes the job's own kwargs"):
        await run_job(Job.from_func(record, kwargs={"name": "a"}), name="b")
    assert RAN == []


# sync twins ------------------------------------------------------------------------------


def test_sync_twins_see_the_open_transaction_and_drain_from_plain_code(
    database_url: URL,
) -> None:
    engine = create_sync_engine(database_url.set(drivername="postgresql+psycopg"))
    chancy = Chancy(database_url, queues=[Queue(name="default")])
    try:
        with Session(engine) as session, session.begin():
            sync_push(session, job("s"))
            testing_sync.assert_pushed(session, func=record, kwargs={"name": "s"})
            testing_sync.refute_pushed(session, func=fail)
            assert len(testing_sync.pushed_jobs(session)) == 1
            with pytest.raises(AssertionError, match="no job matching func="):
                testing_sync.assert_pushed(session, func=fail)
        result = testing_sync.drain(chancy)
        assert result.succeeded == 1
        assert RAN == ["s"]
        assert testing_sync.run_job(record, name="t") == "t"
    finally:
        engine.dispose()


# the plugin's databases ----------------------------------------------------------------


def test_database_pool_gives_fresh_migrated_copies_and_drops_them(server_url: URL) -> None:
    pool = DatabasePool(server_url, spare=1)
    try:
        first, second = pool.take(), pool.take()
        assert first.database != second.database

        async def tables(url: URL) -> set[str]:
            connection = await asyncpg.connect(asyncpg_dsn(url))
            try:
                rows = await connection.fetch("SELECT tablename FROM pg_tables")
            finally:
                await connection.close()
            return {row["tablename"] for row in rows}

        assert "chancy_jobs" in run_sync(lambda: tables(first))
        pool.give_back(first)
    finally:
        pool.close()

    async def databases() -> set[str]:
        connection = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            return {
                row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")
            }
        finally:
            await connection.close()

    left = run_sync(databases)
    assert first.database not in left
    assert second.database not in left  # taken, never given back: dropped at close


def test_database_pool_on_a_server_that_does_not_answer_raises(unused_tcp_port: int) -> None:
    pool = DatabasePool(make_url(f"postgresql://nobody@127.0.0.1:{unused_tcp_port}/x"))
    try:
        with pytest.raises(OSError, match=r"Connect call failed|refused"):
            pool.take()
        with pytest.raises(OSError, match=r"Connect call failed|refused"):
            pool.take()
    finally:
        pool.close()
