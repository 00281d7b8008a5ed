"""chancy.testing used the way an unlucky test suite uses it: sessions with no transaction
or an aborted one, databases with more jobs than a helper reads at once, filters no job
could match, drains cancelled mid-claim or fed forever, run_job of a function that takes
``allowed``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from chancy import Job
from chancy.app import Chancy
from chancy.errors import ChancyError, InvalidKwargsError
from chancy.repository import ClaimRepository
from chancy.sync import push as sync_push
from chancy.testing import _drain as chancy_testing_drain
from chancy.testing import assert_pushed, drain, pushed_jobs, refute_pushed, run_job
from chancy.testing import sync as testing_sync
from tests.support import drained
from tests.support.drained import echo, record

pytestmark = pytest.mark.usefixtures("fresh_records")


def job(name: str) -> Job:
    return Job.from_func(record, kwargs={"name": name})


# reading through the caller's session or connection -------------------------------------


async def test_reading_an_idle_session_leaves_it_free_to_begin(chancy: Chancy) -> None:
    await chancy.push(job("committed"))
    async with AsyncSession(chancy.engine) as session:
        await refute_pushed(session, func=echo)
        await assert_pushed(session, kwargs={"name": "committed"})
        assert not session.in_transaction()
        async with session.begin():
            await chancy.push(job("app"), session=session)
            await assert_pushed(session, kwargs={"name": "app"})


async def test_reading_an_idle_connection_leaves_it_free_to_begin(chancy: Chancy) -> None:
    async with chancy.engine.connect() as connection:
        await refute_pushed(connection, func=record)
        assert not connection.in_transaction()
        async with connection.begin():
            await chancy.push(job("app"), session=connection)
            await assert_pushed(connection, kwargs={"name": "app"})


async def test_a_closed_session_is_read_without_being_opened_again(chancy: Chancy) -> None:
    session = AsyncSession(chancy.engine)
    async with session.begin():
        await chancy.push(job("kept"), session=session)
    await session.close()
    await assert_pushed(session, kwargs={"name": "kept"})
    assert not session.in_transaction()  # no connection held for a test that forgot it


async def test_an_aborted_transaction_is_named_as_the_problem(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        await chancy.push(job("lost"), session=session)
        with pytest.raises(DBAPIError):
            await session.execute(text("SELECT 1/0"))
        with pytest.raises(ChancyError, match="an earlier statement in it failed"):
            await assert_pushed(session, func=record)
        await session.rollback()


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_the_sync_twins_leave_an_idle_session_free_and_name_an_aborted_one(
    database_url: URL, driver: str
) -> None:
    engine = create_sync_engine(database_url.set(drivername=f"postgresql+{driver}"))
    try:
        with Session(engine) as session:
            testing_sync.refute_pushed(session, func=record)
            with session.begin():
                sync_push(session, job("app"))
                testing_sync.assert_pushed(session, kwargs={"name": "app"})
        with engine.connect() as connection:
            testing_sync.assert_pushed(connection, kwargs={"name": "app"})
            with connection.begin():
                with pytest.raises(DBAPIError):
                    connection.execute(text("SELECT 1/0"))
                with pytest.raises(ChancyError, match="an earlier statement in it failed"):
                    testing_sync.pushed_jobs(connection)
    finally:
        engine.dispose()


# many jobs, and what a filter compares -----------------------------------------------------


async def test_a_match_older_than_the_newest_ten_thousand_jobs_is_found(chancy: Chancy) -> None:
    await chancy.push(job("needle"))
    await chancy.push_many([job("hay")] * 10_000)
    (found,) = await assert_pushed(chancy, kwargs={"name": "needle"})
    assert found.id == 1
    with pytest.raises(AssertionError, match="found 1:"):
        await refute_pushed(chancy, kwargs={"name": "needle"})
    assert len(await pushed_jobs(chancy, func=record)) == 10_001
    with pytest.raises(AssertionError, match=r"pushed \(10001 jobs, closest of the newest 10000"):
        await assert_pushed(chancy, kwargs={"name": "nobody"})


async def test_kwargs_compare_as_stored_json_values(chancy: Chancy) -> None:
    await chancy.push(
        Job.from_func(echo, kwargs={"value": {"flag": 1, "ratio": 2, "nested": {"a": 1, "b": 2}}})
    )
    await assert_pushed(
        chancy, kwargs={"value": {"flag": 1, "ratio": 2.0, "nested": {"b": 2, "a": 1}}}
    )
    await refute_pushed(
        chancy, kwargs={"value": {"flag": True, "ratio": 2, "nested": {"a": 1, "b": 2}}}
    )
    await refute_pushed(chancy, kwargs={"value": {"flag": 1, "ratio": 2, "nested": {"a": 1}}})
    with pytest.raises(AssertionError, match=r"differs: kwargs.value: wanted \{'flag': True"):
        await assert_pushed(
            chancy, kwargs={"value": {"flag": True, "ratio": 2, "nested": {"a": 1, "b": 2}}}
        )
    await refute_pushed(chancy, kwargs={"missing": None})


async def test_filters_no_job_could_match_are_refused(chancy: Chancy) -> None:
    deep: object = 0
    for _ in range(5_000):
        deep = [deep]
    refused: list[tuple[dict[str, object], str]] = [
        ({"s": "a\x00b"}, "NUL character"),
        ({"s": "\ud800"}, "lone surrogate"),
        ({"n": float("nan")}, "cannot be stored as JSON"),
        ({"d": deep}, "cannot be stored as JSON"),
    ]
    for kwargs, problem in refused:
        with pytest.raises(InvalidKwargsError, match=problem):
            await assert_pushed(chancy, kwargs=kwargs)
    with pytest.raises(ChancyError, match="priority= takes a job's priority"):
        await assert_pushed(chancy, priority="1")  # type: ignore[arg-type]
    with pytest.raises(ChancyError, match="priority= takes a job's priority"):
        await refute_pushed(chancy, priority=True)
    with pytest.raises(ChancyError, match="queue= takes a queue's name"):
        await pushed_jobs(chancy, queue=5)  # type: ignore[arg-type]


# drain and run_job ------------------------------------------------------------------------


async def test_a_drain_cancelled_once_its_claim_is_made_leaves_no_job_running(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimed, answered = asyncio.Event(), asyncio.Event()
    claim = ClaimRepository.claim_available

    async def claim_then_wait(self: ClaimRepository, *args: Any, **kwargs: Any) -> Any:
        jobs = await claim(self, *args, **kwargs)
        if jobs:  # committed: the drain is cancelled before the answer reaches it
            claimed.set()
            await answered.wait()
        return jobs

    monkeypatch.setattr(ClaimRepository, "claim_available", claim_then_wait)
    reference = await chancy.push(job("a"))
    draining = asyncio.create_task(drain(chancy))
    await claimed.wait()
    draining.cancel()
    answered.set()
    with pytest.raises(asyncio.CancelledError):
        await draining
    stored = await chancy.get_job(reference)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.worker_id) == ("pending", 0, None)
    assert drained.RAN == []


async def test_a_recursive_drain_of_jobs_that_push_themselves_stops_with_an_error(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chancy_testing_drain, "RECURSIVE_RUNS_MAX", 5)
    drained.PUSHER = chancy
    await chancy.push(Job.from_func(drained.push_itself, kwargs={"name": "again"}))
    with pytest.raises(ChancyError, match=r"push still more.*Pass limit="):
        await drain(chancy)
    assert len(drained.RAN) == 6  # the first job, then the five it pushed in turn
    await refute_pushed(chancy, state="running")
    (left,) = await assert_pushed(chancy, state="pending")
    assert left.attempts == 0
    assert (await drain(chancy, limit=20)).succeeded == 20  # limit= runs on, as asked


async def test_run_job_of_a_function_taking_allowed_says_to_use_a_job() -> None:
    with pytest.raises(ChancyError, match="takes a parameter 'allowed' too; pass its argument"):
        await run_job(drained.takes_allowed, allowed=["tests.*"])
    job_with_allowed = Job.from_func(drained.takes_allowed, kwargs={"allowed": ["x"]})
    assert await run_job(job_with_allowed, allowed=["tests.*"]) == ["x"]
