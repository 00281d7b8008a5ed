"""A graceful stop past ``shutdown_timeout``: what can be interrupted is given back; a
plain function running in a thread cannot be, so the worker keeps it until it ends."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job, Reference
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.waiting import until, until_async

WAITING_FOR_THREADS = "whose functions run in threads"


@pytest.fixture(params=["asyncio", "threads"])
async def app(request: pytest.FixtureRequest, database_url: URL) -> AsyncIterator[Chancy]:
    queue = Queue(name="default", concurrency=2, executor=request.param, polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy:
        yield chancy


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    tasks.started.clear()
    event = tasks.gates["stop"] = threading.Event()
    yield event
    event.set()  # never leave a thread waiting
    tasks.gates.clear()


async def stop_past_the_timeout(
    app: Chancy, caplog: pytest.LogCaptureFixture, settings: WorkerSettings
) -> tuple[Worker, asyncio.Task[None], Reference]:
    """A worker stopping while the gated job runs in its thread, waiting for it."""
    caplog.set_level(logging.INFO, logger="chancy")
    worker = Worker(app, settings=settings)
    await worker.start()
    ref = await app.push(Job.from_func(tasks.wait_for_gate, kwargs={"label": "stop"}))
    await until(lambda: "stop" in tasks.started, what="the job running")
    stopping = asyncio.create_task(worker.stop())
    await until(lambda: WAITING_FOR_THREADS in caplog.text, what="the stop waiting")
    return worker, stopping, ref


async def test_a_stop_never_gives_back_a_job_running_in_a_thread(
    app: Chancy, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    _worker, stopping, ref = await stop_past_the_timeout(
        app, caplog, WorkerSettings(shutdown_timeout=0.1)
    )
    held = await app.get_job(ref)
    assert held is not None
    assert held.state is JobState.RUNNING
    assert not stopping.done()
    gate.set()
    await asyncio.wait_for(stopping, timeout=20)
    done = await app.get_job(ref)
    assert done is not None
    assert (done.state, done.result, done.attempts) == (JobState.SUCCEEDED, "stop", 1)


async def test_a_stop_keeps_renewing_the_lease_of_a_job_running_in_a_thread(
    app: Chancy, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(shutdown_timeout=0.1, lease_seconds=0.6)
    _worker, stopping, ref = await stop_past_the_timeout(app, caplog, settings)
    first = await app.get_job(ref)
    assert first is not None
    assert first.lease_expires_at is not None
    leased: datetime = first.lease_expires_at

    async def renewed() -> bool:
        now = await app.get_job(ref)
        return (
            now is not None and now.lease_expires_at is not None and now.lease_expires_at > leased
        )

    await until_async(renewed, timeout=10, what="the lease renewed")
    gate.set()
    await asyncio.wait_for(stopping, timeout=20)


async def test_a_stop_still_gives_back_a_coroutine_at_once(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as app:
        worker = Worker(app, settings=WorkerSettings(shutdown_timeout=0.1))
        await worker.start()
        tasks.started.clear()
        ref = await app.push(
            Job.from_func(tasks.sleep_async, kwargs={"seconds": 60, "label": "coro"})
        )
        await until(lambda: "coro" in tasks.started)
        await worker.stop()
        back = await app.get_job(ref)
    assert back is not None
    assert back.state is JobState.PENDING
    assert WAITING_FOR_THREADS not in caplog.text
