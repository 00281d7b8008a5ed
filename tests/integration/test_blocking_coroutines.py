"""Nothing a job does holds up its worker's leases: not even a coroutine that blocks the
worker's event loop (CPU work, a sync call) for longer than the lease. The leases of the
worker's jobs and its leadership are renewed from a thread of their own, so no other
worker takes the jobs over and runs them a second time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job, Reference
from chancy.models import LeaderRow
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.leases import LeaseWatch
from tests.support.waiting import until

LEASE_SECONDS = 1.5
BLOCK_SECONDS = 4.0  # well past the lease and the leader's lease
SETTINGS = WorkerSettings(
    lease_seconds=LEASE_SECONDS, leader_ttl=LEASE_SECONDS, rescue_interval=0.2
)


class WorkerElsewhere:
    """Another worker of the cluster, on an event loop of its own in a thread (so the first
    worker's blocked loop does not block it); it runs no queue of the test's, only the
    leader's services: given the lead, its rescuer takes back every lapsed job."""

    def __init__(self, url: URL) -> None:
        self._url = url
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="elsewhere")
        self.worker_id = "elsewhere"

    async def __aenter__(self) -> WorkerElsewhere:
        self._thread.start()
        assert await asyncio.to_thread(self._started.wait, 30), "the other worker never started"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join, 30)

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        queue = Queue(name="elsewhere", polling_interval=0.2)
        async with (
            Chancy(self._url, queues=[queue]) as chancy,
            Worker(chancy, worker_id=self.worker_id, settings=SETTINGS),
        ):
            self._started.set()
            await self._stop.wait()


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queue = Queue(name="default", concurrency=2, executor="asyncio", polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy:
        yield chancy


@pytest.fixture
def recorders() -> Iterator[None]:
    tasks.started.clear()
    tasks.runs.clear()
    yield
    tasks.runs.clear()


async def block_the_loop(app: Chancy) -> tuple[Reference, Reference]:
    """Push a job that runs on (awaiting), then one that blocks the worker's loop for
    :data:`BLOCK_SECONDS`; returns both once the blocking one has ended."""
    other = await app.push(
        Job.from_func(
            tasks.sleep_async, kwargs={"seconds": 60, "label": "other"}
        ).with_max_attempts(3)
    )
    await until(lambda: "other" in tasks.started, what="the other job running")
    blocking = await app.push(
        Job.from_func(
            tasks.block_loop, kwargs={"seconds": BLOCK_SECONDS, "label": "block"}
        ).with_max_attempts(3)
    )
    await app.wait_for_job(blocking, timeout=60)
    return other, blocking


@pytest.mark.usefixtures("recorders")
async def test_a_coroutine_blocking_the_loop_past_the_lease_lets_no_lease_lapse(
    app: Chancy, database_url: URL
) -> None:
    async with Worker(app, settings=SETTINGS) as worker:
        with LeaseWatch(database_url, worker_id=worker.worker_id) as watch:
            other, _blocking = await block_the_loop(app)
        assert watch.lapsed == set()
        assert other.id in worker.running
        await app.cancel_job(other)


@pytest.mark.usefixtures("recorders")
async def test_a_coroutine_blocking_the_loop_past_the_lease_runs_once(
    app: Chancy, database_url: URL
) -> None:
    async with Worker(app, settings=SETTINGS) as worker, WorkerElsewhere(database_url):
        other, blocking = await block_the_loop(app)
        done = await app.wait_for_job(blocking, timeout=60)
        still = await app.get_job(other)
        assert other.id in worker.running
        await app.cancel_job(other)
    assert still is not None
    assert (still.state, still.attempts, still.errors) == (JobState.RUNNING, 1, ())
    assert (done.state, done.attempts, done.errors) == (JobState.SUCCEEDED, 1, ())
    assert tasks.runs == {"block": 1}


@pytest.mark.usefixtures("recorders")
async def test_a_worker_whose_loop_is_blocked_past_its_leader_lease_stays_the_leader(
    app: Chancy, database_url: URL
) -> None:
    async with Worker(app, settings=SETTINGS) as worker, WorkerElsewhere(database_url):
        assert worker.is_leader
        other, _blocking = await block_the_loop(app)
        await app.cancel_job(other)
        async with app.engine.connect() as connection:
            lead = (await connection.execute(sa.select(LeaderRow.worker_id, LeaderRow.term))).one()
        assert worker.is_leader
    assert tuple(lead) == (worker.worker_id, 1)


async def test_a_stopped_worker_renews_nothing_more(app: Chancy) -> None:
    async with Worker(app, settings=SETTINGS) as worker:
        assert "chancy-leases" in {thread.name for thread in threading.enumerate()}
    assert "chancy-leases" not in {thread.name for thread in threading.enumerate()}
    assert not worker.is_leader
