"""A worker in the test's process: runs jobs, retries, times out, cancels, stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from chancy.app import Chancy
from chancy.executor import Job, QueuedJob
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.repository import ClaimRepository
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.waiting import until


@pytest.fixture(autouse=True)
def clean_recorders() -> None:
    tasks.calls.clear()
    tasks.started.clear()
    tasks.running_now = tasks.most_running = 0


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queues = [Queue(name="default", concurrency=4, polling_interval=0.2)]
    async with Chancy(database_url, queues=queues) as chancy:
        yield chancy


def job(fn: object, **kwargs: object) -> Job:
    return Job.from_func(fn, kwargs=kwargs)  # type: ignore[arg-type]


async def test_a_pushed_job_runs_and_its_result_is_stored(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push("default", job(tasks.record, label="hello"))
        done = await app.wait_for_job(ref, timeout=10)
    assert done.state is JobState.SUCCEEDED
    assert done.result == "hello"
    assert tasks.calls == ["hello"]
    assert done.attempts == 1
    assert done.completed_at is not None


class RecordedClaims(ClaimRepository):
    """The claims as the worker makes them: whether each asked to be durable."""

    def __init__(self) -> None:
        super().__init__()
        self.durable: list[bool] = []

    async def claim_available(self, *args: Any, **kwargs: Any) -> list[QueuedJob]:
        self.durable.append(kwargs["durable"])
        return await super().claim_available(*args, **kwargs)


@pytest.mark.parametrize("durable", [False, True])
async def test_a_worker_claims_durably_only_with_durable_claims(app: Chancy, durable: bool) -> None:
    worker = Worker(app, settings=WorkerSettings(durable_claims=durable))
    worker._claims = recorded = RecordedClaims()
    async with worker:
        ref = await app.push("default", job(tasks.record, label="x"))
        await app.wait_for_job(ref, timeout=10)
    assert recorded.durable
    assert set(recorded.durable) == {durable}


async def test_coroutine_jobs_run_on_the_loop(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push("default", job(tasks.record_async, label="async"))
        assert (await app.wait_for_job(ref, timeout=10)).result == "async"


async def test_priority_order_with_concurrency_one(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default", concurrency=1)]) as app:
        for i, priority in enumerate([0, 10, -10, 5, 0, -10]):
            await app.push(
                "default", job(tasks.record, label=f"{priority}#{i}").with_priority(priority)
            )
        async with Worker(app):
            refs = [
                r.id
                for r in await app.push_many(
                    "default", [job(tasks.record, label="last").with_priority(100)]
                )
            ]
            await app.wait_for_job(refs[0], timeout=10)
    assert tasks.calls == ["-10#2", "-10#5", "0#0", "0#4", "5#3", "10#1", "last"]


async def test_concurrency_is_never_exceeded(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default", concurrency=3)]) as app:
        refs = await app.push_many("default", [job(tasks.track_concurrency, seconds=0.05)] * 15)
        async with Worker(app):
            for ref in refs:
                await app.wait_for_job(ref, timeout=20)
    assert tasks.most_running == 3


async def test_a_failing_job_is_retried_then_fails_keeping_every_error(app: Chancy) -> None:
    async with Worker(app):
        failing = job(tasks.fail, message="boom").with_max_attempts(3).with_backoff(0)
        ref = await app.push("default", failing)
        done = await app.wait_for_job(ref, timeout=20)
    assert done.state is JobState.FAILED
    assert done.attempts == 3
    assert [e["attempt"] for e in done.errors] == [1, 2, 3]
    assert all(e["type"] == "ValueError" and e["message"] == "boom" for e in done.errors)
    assert "tasks.py" in done.errors[0]["traceback"]


async def test_a_job_that_succeeds_on_a_retry_succeeds(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push(job(tasks.fail_until, attempt=2).with_max_attempts(2).with_backoff(0))
        done = await app.wait_for_job(ref, timeout=20)
    assert (done.state, done.result, len(done.errors)) == (JobState.SUCCEEDED, 2, 1)


async def test_the_running_queued_job_is_passed_in(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push(job(tasks.whoami))
        done = await app.wait_for_job(ref, timeout=10)
    assert done.result == {"id": ref.id, "attempts": 1}


async def test_a_result_that_is_not_json_fails_the_job(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push(job(tasks.not_json).with_max_attempts(3))
        done = await app.wait_for_job(ref, timeout=10)
    assert done.state is JobState.FAILED
    assert done.attempts == 1
    assert "cannot be stored as JSON" in done.errors[0]["message"]


async def test_a_timeout_interrupts_the_job(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push(job(tasks.sleep_async, seconds=30).with_timeout(0.2))
        done = await app.wait_for_job(ref, timeout=10)
    assert done.state is JobState.FAILED
    assert done.errors[0]["type"] == "JobTimeoutError"


async def test_a_cancelled_pending_job_never_runs(app: Chancy) -> None:
    ref = await app.push(job(tasks.record, label="never"))
    await app.cancel_job(ref)
    async with Worker(app):
        marker = await app.push(job(tasks.record, label="marker"))
        await app.wait_for_job(marker, timeout=10)
    assert tasks.calls == ["marker"]
    assert (await app.get_job(ref)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_cancelling_a_running_job_interrupts_it(app: Chancy) -> None:
    async with Worker(app) as worker:
        ref = await app.push(job(tasks.sleep_async, seconds=60, label="long"))
        await until(lambda: ref.id in worker.running)
        await app.cancel_job(ref)
        done = await app.wait_for_job(ref, timeout=10)
        await until(lambda: ref.id not in worker.running)
    assert done.state is JobState.CANCELLED
    assert done.result is None


async def test_retry_job_runs_a_failed_job_again(app: Chancy) -> None:
    async with Worker(app):
        ref = await app.push(job(tasks.fail_until, attempt=2))
        assert (await app.wait_for_job(ref, timeout=10)).state is JobState.FAILED
        assert await app.retry_job(ref) is not None
        done = await app.wait_for_job(ref, timeout=10)
    assert (done.state, done.result) == (JobState.SUCCEEDED, 2)


async def test_graceful_stop_gives_unfinished_jobs_back_at_once(app: Chancy) -> None:
    worker = Worker(app, settings=WorkerSettings(shutdown_timeout=0.2))
    await worker.start()
    quick = await app.push(job(tasks.sleep_async, seconds=0.01))
    slow = await app.push(job(tasks.sleep_async, seconds=60, label="slow"))
    await until(lambda: slow.id in worker.running)
    await worker.stop()
    assert (await app.get_job(quick)).state is JobState.SUCCEEDED  # type: ignore[union-attr]
    back = await app.get_job(slow)
    assert back is not None
    assert (back.state, back.lease_expires_at, back.worker_id) == (JobState.PENDING, None, None)


async def test_scheduled_jobs_are_promoted_and_run(app: Chancy) -> None:
    async with Worker(app, settings=WorkerSettings(promote_interval=0.05)):
        ref = await app.push(job(tasks.record, label="later").with_delay(0.3))
        assert (await app.get_job(ref)).state is JobState.SCHEDULED  # type: ignore[union-attr]
        done = await app.wait_for_job(ref, timeout=10)
    assert done.state is JobState.SUCCEEDED
    assert done.started_at >= done.scheduled_at  # type: ignore[operator]


async def test_a_job_whose_lease_expired_is_rescued_and_run(app: Chancy) -> None:
    ref = await app.push(job(tasks.record, label="rescued").with_max_attempts(2))
    async with app.engine.begin() as connection:
        await ClaimRepository().claim_available(connection, "default", 1, "dead", lease_seconds=-1)
    async with Worker(app, settings=WorkerSettings(rescue_interval=0.05)):
        done = await app.wait_for_job(ref, timeout=10)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2)
    assert done.errors[0]["type"] == "LeaseExpired"


async def test_a_worker_that_lost_its_lease_stops_the_run(app: Chancy) -> None:
    async with Worker(app, settings=WorkerSettings(lease_seconds=0.3)) as worker:
        ref = await app.push(job(tasks.sleep_async, seconds=60).with_max_attempts(1))
        await until(lambda: ref.id in worker.running)
        async with app.engine.begin() as connection:  # another worker took it over
            await connection.execute(
                sa.update(JobRow)
                .where(JobRow.id == ref.id)
                .values(attempts=JobRow.attempts + 1, fence=JobRow.fence + 1)
            )
        await until(lambda: ref.id not in worker.running)
    stored = await app.get_job(ref)
    assert stored is not None
    assert stored.state is JobState.RUNNING  # the new attempt's, untouched by the old one


async def test_wait_for_job_of_an_unknown_job_raises(app: Chancy) -> None:
    from chancy.errors import ChancyError

    with pytest.raises(ChancyError, match="no job"):
        await app.wait_for_job(123456789, timeout=5)


async def test_wait_for_job_times_out(app: Chancy) -> None:
    ref = await app.push(job(tasks.record, label="nobody runs me"))
    with pytest.raises(TimeoutError):
        await app.wait_for_job(ref, timeout=0.2)


async def test_worker_refuses_an_old_schema(empty_database_url: URL) -> None:
    from chancy.errors import SchemaError

    async with Chancy(empty_database_url, queues=[Queue(name="default")]) as app:
        with pytest.raises(SchemaError, match="chancy migrate"):
            await Worker(app).start()


EXECUTORS = ["asyncio", "threads", "processes"]


@pytest.fixture(params=EXECUTORS)
async def any_executor(request: pytest.FixtureRequest, database_url: URL) -> AsyncIterator[Chancy]:
    queue = Queue(name="default", concurrency=2, executor=request.param, polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy:
        yield chancy


async def test_each_executor_stores_results_and_errors(any_executor: Chancy) -> None:
    app = any_executor
    async with Worker(app):
        ok = await app.push(job(tasks.greet, name="exec"))
        bad = await app.push(job(tasks.fail, message="nope"))
        injected = await app.push(job(tasks.whoami))
        done_ok, done_bad = (
            await app.wait_for_job(ok, timeout=30),
            await app.wait_for_job(bad, timeout=30),
        )
        done_injected = await app.wait_for_job(injected, timeout=30)
    assert (done_ok.state, done_ok.result) == (JobState.SUCCEEDED, "Hello, exec!")
    assert done_bad.state is JobState.FAILED
    assert (done_bad.errors[0]["type"], done_bad.errors[0]["message"]) == ("ValueError", "nope")
    assert done_injected.result == {"id": injected.id, "attempts": 1}


async def test_each_executor_enforces_timeouts(any_executor: Chancy) -> None:
    app = any_executor
    async with Worker(app, settings=WorkerSettings(shutdown_timeout=0.1)):
        ref = await app.push(job(tasks.sleep_sync, seconds=5).with_timeout(0.3))
        done = await app.wait_for_job(ref, timeout=30)
    assert done.state is JobState.FAILED
    assert done.errors[0]["type"] == "JobTimeoutError"


async def test_each_executor_ends_a_cancelled_running_job(any_executor: Chancy) -> None:
    app = any_executor
    async with Worker(app, settings=WorkerSettings(shutdown_timeout=0.1)) as worker:
        ref = await app.push(job(tasks.sleep_sync, seconds=5))
        await until(lambda: ref.id in worker.running)
        await app.cancel_job(ref)
        await until(lambda: ref.id not in worker.running, timeout=10)
    assert (await app.get_job(ref)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_an_app_engine_on_psycopg_pushes_and_runs_jobs(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    """The hot path's bare asyncpg statements are an optimisation: on another driver the
    same statements run through SQLAlchemy."""
    engine = create_async_engine(database_url.set(drivername="postgresql+psycopg"))
    try:
        queues = [Queue(name="default", polling_interval=60)]  # woken by LISTEN, not polling
        async with Chancy(engine=engine, queues=queues) as chancy, Worker(chancy):
            refs = await chancy.push_many(
                "default", [job(tasks.record, label=f"j{i}") for i in range(5)]
            )
            refs.append(await chancy.push("default", job(tasks.record, label="one")))
            done = [await chancy.wait_for_job(ref, timeout=10) for ref in refs]
    finally:
        await engine.dispose()
    assert [d.result for d in done] == ["j0", "j1", "j2", "j3", "j4", "one"]
    assert {d.state for d in done} == {JobState.SUCCEEDED}
    assert "LISTEN connection failed" not in caplog.text
