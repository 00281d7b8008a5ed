"""Whatever a job returns or raises, its attempt gets an outcome, and no job's outcome
holds back another's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import tasks
from tests.support.waiting import until_async

EXECUTORS = ["asyncio", "threads", "processes"]


def job(fn: object, **kwargs: object) -> Job:
    return Job.from_func(fn, kwargs=kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=EXECUTORS)
async def any_executor(request: pytest.FixtureRequest, database_url: URL) -> AsyncIterator[Chancy]:
    queue = Queue(name="default", concurrency=4, executor=request.param, polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy:
        yield chancy


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queues = [Queue(name="default", concurrency=8, polling_interval=0.2)]
    async with Chancy(database_url, queues=queues) as chancy:
        yield chancy


async def test_poison_outcomes_fail_their_jobs_and_hold_back_no_other(app: Chancy) -> None:
    poison = [tasks.nul_result, tasks.surrogate_result, tasks.raise_nul]
    refs = await app.push_many("default", [job(fn).with_max_attempts(1) for fn in poison])
    fine = await app.push_many("default", [job(tasks.record, label=f"ok{i}") for i in range(5)])
    async with Worker(app):
        done = [await app.wait_for_job(ref, timeout=20) for ref in [*refs, *fine]]
    assert [d.state for d in done[:3]] == [JobState.FAILED] * 3
    assert "NUL" in done[0].errors[0]["message"]
    assert "surrogate" in done[1].errors[0]["message"]
    assert done[2].errors[0]["message"] == "bad\\x00byte"
    assert [(d.state, d.result) for d in done[3:]] == [
        (JobState.SUCCEEDED, f"ok{i}") for i in range(5)
    ]


async def test_a_result_nested_too_deeply_fails_its_job(app: Chancy) -> None:
    ref = await app.push(job(tasks.deeply_nested, depth=100_000).with_max_attempts(3))
    async with Worker(app):
        done = await app.wait_for_job(ref, timeout=20)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert "nested too deeply" in done.errors[0]["message"]


async def test_a_failure_at_attempt_1025_is_retried(app: Chancy) -> None:
    ref = await app.push(job(tasks.fail, message="again").with_max_attempts(2000))
    async with app.engine.begin() as connection:
        await connection.execute(sa.update(JobRow).where(JobRow.id == ref.id).values(attempts=1024))

    async def retrying() -> bool:
        stored = await app.get_job(ref)
        return stored is not None and stored.state is JobState.RETRYING

    async with Worker(app):
        await until_async(retrying, timeout=20, what="the job retrying")
    stored = await app.get_job(ref)
    assert stored is not None
    assert (stored.attempts, stored.errors[-1]["message"]) == (1025, "again")


@pytest.mark.parametrize(
    "exiting",
    [
        job(tasks.exit_worker, code=3),
        job(tasks.exit_worker_async, code=3),
        job(tasks.interrupt_worker),
    ],
    ids=["sys.exit", "sys.exit-async", "KeyboardInterrupt"],
)
async def test_a_job_that_tries_to_exit_fails_and_the_worker_runs_on(
    any_executor: Chancy, exiting: Job
) -> None:
    app = any_executor
    async with Worker(app):
        ref = await app.push(exiting.with_max_attempts(3))
        done = await app.wait_for_job(ref, timeout=30)
        after = await app.wait_for_job(await app.push(job(tasks.greet, name="next")), timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "JobExitError"
    assert "tried to exit the worker" in done.errors[0]["message"]
    assert after.result == "Hello, next!"
