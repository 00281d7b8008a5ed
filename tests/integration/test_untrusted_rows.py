"""A job row is untrusted input: a bad one fails as its own job, and the worker goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.errors import CorruptJobError
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import tasks
from tests.support.rows import insert_job_row


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queues = [Queue(name="default", concurrency=4, polling_interval=0.1)]
    async with Chancy(database_url, queues=queues) as chancy:
        yield chancy


def greeting(name: str) -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": name})


async def run_rows(app: Chancy, *rows: dict[str, Any]) -> list[Any]:
    """Insert ``rows`` by hand, run a worker until each has finished, return them."""
    ids = [await insert_job_row(app.engine, max_attempts=3, **row) for row in rows]
    async with Worker(app):
        return [await app.wait_for_job(job_id, timeout=10) for job_id in ids]


@pytest.mark.parametrize(
    "func", ["os", "not a name; rm -rf /", "tests.support.tasks.greet()", "", "1st.module.fn"]
)
async def test_a_func_that_is_not_a_dotted_name_fails_the_job_at_once(
    app: Chancy, func: str
) -> None:
    (done,) = await run_rows(app, {"func": func, "kwargs": {}})
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "CorruptJobError"
    assert "not a dotted name" in done.errors[0]["message"]


@pytest.mark.parametrize(
    ("kwargs", "json_type"),
    [([1, 2], "array"), ("name", "string"), (5, "number"), (None, "null")],
)
async def test_kwargs_that_are_not_an_object_fail_the_job_at_once(
    app: Chancy, kwargs: object, json_type: str
) -> None:
    (done,) = await run_rows(app, {"func": "tests.support.tasks.greet", "kwargs": kwargs})
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "CorruptJobError"
    assert f"are a JSON {json_type}, not an object" in done.errors[0]["message"]


async def test_a_timeout_that_is_not_positive_fails_the_job_at_once(app: Chancy) -> None:
    row = {"func": "tests.support.tasks.greet", "kwargs": {"name": "x"}, "timeout": -1.0}
    (done,) = await run_rows(app, row)
    assert (done.state, done.errors[0]["type"]) == (JobState.FAILED, "CorruptJobError")


async def test_bad_rows_do_not_hold_back_the_good_jobs_claimed_with_them(app: Chancy) -> None:
    """One claim takes all four rows: mapping them must not fail on the bad ones."""
    done = await run_rows(
        app,
        {"func": "tests.support.tasks.greet", "kwargs": {"name": "first"}},
        {"func": "tests.support.tasks.greet", "kwargs": [1]},
        {"func": "tests.support.tasks.greet", "kwargs": {"name": "x"}, "errors": {"not": "a list"}},
        {"func": "no dots", "kwargs": {}},
    )
    assert [job.state for job in done] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.SUCCEEDED,
        JobState.FAILED,
    ]
    assert done[0].result == "Hello, first!"


async def test_the_worker_runs_on_after_a_bad_row(app: Chancy) -> None:
    bad = await insert_job_row(app.engine, func="tests.support.tasks.greet", kwargs="oops")
    async with Worker(app):
        assert (await app.wait_for_job(bad, timeout=10)).state is JobState.FAILED
        good = await app.push(greeting("after"))
        done = await app.wait_for_job(good, timeout=10)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "Hello, after!")


async def give_state(app: Chancy, job_id: int, state: str) -> None:
    """Store a state chancy does not know (the check constraint dropped first, as a
    newer chancy, or a hand on the table, might)."""
    async with app.engine.begin() as connection:
        await connection.execute(
            sa.text("ALTER TABLE chancy_jobs DROP CONSTRAINT ck_chancy_jobs_state")
        )
        await connection.execute(sa.update(JobRow).where(JobRow.id == job_id).values(state=state))


async def test_get_job_of_a_row_in_an_unknown_state_names_the_job_and_the_state(
    app: Chancy,
) -> None:
    ref = await app.push(greeting("x"))
    await give_state(app, ref.id, "exploded")
    with pytest.raises(CorruptJobError) as caught:
        await app.get_job(ref)
    message = str(caught.value)
    assert f"job {ref.id}" in message
    assert "'exploded'" in message
    assert "pending" in message  # the states it knows


async def test_wait_for_job_of_a_row_in_an_unknown_state_raises_the_same(app: Chancy) -> None:
    ref = await app.push(greeting("x"))
    await give_state(app, ref.id, "exploded")
    with pytest.raises(CorruptJobError, match="exploded"):
        await app.wait_for_job(ref, timeout=5)
