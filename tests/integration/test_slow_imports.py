"""Nothing a job does holds up the worker's heartbeat: not even an import slower than
the lease of the worker's other jobs."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.executor.base import resolve_function
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.leases import LeaseWatch
from tests.support.waiting import until

SLOW = "tests.support.slow_import"
LEASE_SECONDS = 2.0


@pytest.fixture(params=["asyncio", "threads"])
async def app(request: pytest.FixtureRequest, database_url: URL) -> AsyncIterator[Chancy]:
    queue = Queue(name="default", concurrency=2, executor=request.param, polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy:
        yield chancy


@pytest.fixture
def fresh_slow_module() -> None:
    """The slow module not imported yet, so that the worker's import is slow again."""
    sys.modules.pop(SLOW, None)
    resolve_function.cache_clear()


@pytest.mark.usefixtures("fresh_slow_module")
async def test_an_import_slower_than_the_lease_lets_no_other_lease_lapse(
    app: Chancy, database_url: URL
) -> None:
    tasks.started.clear()
    async with Worker(app, settings=WorkerSettings(lease_seconds=LEASE_SECONDS)) as worker:
        other = await app.push(
            Job.from_func(tasks.sleep_async, kwargs={"seconds": 60, "label": "other"})
        )
        await until(lambda: "other" in tasks.started, what="the other job running")
        with LeaseWatch(database_url, job_id=other.id) as watch:
            slow = await app.push(Job(func=f"{SLOW}.imported"))
            done = await app.wait_for_job(slow, timeout=60)
        assert other.id in worker.running
        await app.cancel_job(other)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "imported")
    assert not watch.lapsed
