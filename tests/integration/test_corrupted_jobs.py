"""Job rows corrupted by hand (an UPDATE behind chancy's back) are untrusted input: each
fails as that job, with an error saying what is wrong, and the worker goes on running
the jobs after it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job, QueuedJob
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.waiting import until_async

WAIT = 20.0


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queues = [Queue(name="default", concurrency=4, polling_interval=0.2)]
    async with Chancy(database_url, queues=queues) as chancy:
        yield chancy


async def run_corrupted(app: Chancy, assignment: str) -> tuple[QueuedJob, QueuedJob]:
    """Push a job, corrupt its row with ``SET <assignment>``, then push a good job after
    it and run a worker until both are finished; returns both, as stored."""
    bad = await app.push("default", Job.from_func(tasks.greet, kwargs={"name": "bad"}))
    async with app.engine.begin() as connection:
        await connection.execute(
            sa.text(f"UPDATE chancy_jobs SET {assignment} WHERE id = :id"), {"id": bad.id}
        )
    good = await app.push("default", Job.from_func(tasks.greet, kwargs={"name": "good"}))
    async with Worker(app, settings=WorkerSettings(lease_seconds=2, rescue_interval=0.2)) as worker:
        finished_bad = await app.wait_for_job(bad, timeout=WAIT)
        finished_good = await app.wait_for_job(good, timeout=WAIT)
        assert not worker.stopped.is_set()
    return finished_bad, finished_good


def last_error(job: QueuedJob) -> str:
    assert job.errors, f"job {job.id} has no error: {job}"
    error = job.errors[-1]
    return f"{error.get('type')}: {error.get('message')}"


async def run_with_missing_module(app: Chancy) -> tuple[QueuedJob, QueuedJob]:
    """Push a job whose row names a module no worker has, then a good job after it; run a
    worker until the good job finished and the bad one was deferred; returns both."""
    bad = await app.push("default", Job.from_func(tasks.greet, kwargs={"name": "bad"}))
    async with app.engine.begin() as connection:
        await connection.execute(
            sa.text("UPDATE chancy_jobs SET func = 'no.such.module.fn' WHERE id = :id"),
            {"id": bad.id},
        )
    good = await app.push("default", Job.from_func(tasks.greet, kwargs={"name": "good"}))

    async def deferred() -> bool:
        job = await app.get_job(bad)
        return job is not None and any(error.get("deferred") for error in job.errors)

    async with Worker(app, settings=WorkerSettings(lease_seconds=2, rescue_interval=0.2)) as worker:
        finished_good = await app.wait_for_job(good, timeout=WAIT)
        await until_async(deferred, timeout=WAIT, what="the bad job to be deferred")
        assert not worker.stopped.is_set()
    stored_bad = await app.get_job(bad)
    assert stored_bad is not None
    return stored_bad, finished_good


# A module no worker can import is a deployment problem, not the job's: the job is
# deferred without using an attempt, for a worker that can (it used to fail at once).
async def test_a_job_naming_a_module_that_does_not_exist_is_deferred_saying_so(
    app: Chancy,
) -> None:
    bad, _good = await run_with_missing_module(app)
    assert (bad.state, bad.attempts) == (JobState.SCHEDULED, 0)
    assert "no.such.module.fn" in last_error(bad)


async def test_a_worker_runs_the_next_job_after_one_naming_a_missing_module(app: Chancy) -> None:
    _bad, good = await run_with_missing_module(app)
    assert (good.state, good.result) == (JobState.SUCCEEDED, "Hello, good!")


async def test_a_job_whose_kwargs_no_longer_fit_its_function_fails_naming_them(
    app: Chancy,
) -> None:
    bad, _good = await run_corrupted(app, """kwargs = '{"nmae": "typo"}'""")
    assert bad.state is JobState.FAILED
    assert "nmae" in last_error(bad)


async def test_a_worker_runs_the_next_job_after_one_whose_kwargs_do_not_fit(app: Chancy) -> None:
    _bad, good = await run_corrupted(app, """kwargs = '{"nmae": "typo"}'""")
    assert (good.state, good.result) == (JobState.SUCCEEDED, "Hello, good!")


async def test_a_job_whose_kwargs_are_not_an_object_fails_saying_so(app: Chancy) -> None:
    bad, _good = await run_corrupted(app, "kwargs = '[1, 2]'")
    assert bad.state is JobState.FAILED
    assert "kwargs" in last_error(bad)


async def test_a_worker_runs_the_next_job_after_one_whose_kwargs_are_not_an_object(
    app: Chancy,
) -> None:
    _bad, good = await run_corrupted(app, "kwargs = '[1, 2]'")
    assert (good.state, good.result) == (JobState.SUCCEEDED, "Hello, good!")


async def test_a_job_whose_meta_is_not_an_object_fails_saying_so(app: Chancy) -> None:
    bad, _good = await run_corrupted(app, """meta = '"not an object"'""")
    assert bad.state is JobState.FAILED
    assert "meta" in last_error(bad)


async def test_a_worker_runs_the_next_job_after_one_whose_meta_is_not_an_object(
    app: Chancy,
) -> None:
    _bad, good = await run_corrupted(app, """meta = '"not an object"'""")
    assert (good.state, good.result) == (JobState.SUCCEEDED, "Hello, good!")
