"""How a push wakes a worker: after its commit, coalesced, never raising, never needed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from chancy.app import Chancy
from chancy.events import EVENTS_CHANNEL
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.states import JobState
from chancy.wakeups import WakeUps
from chancy.worker import Worker
from tests.support import tasks
from tests.support.servers import asyncpg_dsn

# Far longer than any wait below: a job that starts sooner was started by a wake-up.
NEVER_POLLS = 60.0


def greet(name: str = "w") -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": name})


@pytest.fixture
async def notifications(database_url: URL) -> AsyncIterator[asyncio.Queue[dict[str, str]]]:
    """The events on chancy's channel, decoded."""
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    received: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await listener.add_listener(
        EVENTS_CHANNEL, lambda *args: received.put_nowait(json.loads(args[3]))
    )
    yield received
    await listener.close()


async def events_before_a_marker(
    chancy: Chancy, received: asyncio.Queue[dict[str, str]]
) -> list[dict[str, str]]:
    """The ``pushed`` events that arrived before a marker sent now: PostgreSQL delivers
    the notifications of transactions in their commit order."""
    async with chancy.engine.connect() as connection:
        await connection.execute(sa.text(f"""NOTIFY {EVENTS_CHANNEL}, '{{"event": "marker"}}'"""))
        await connection.commit()
    events = []
    while (event := await asyncio.wait_for(received.get(), timeout=5))["event"] != "marker":
        if event["event"] == "pushed":
            events.append(event)
    return events


async def count_jobs(chancy: Chancy, queue: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(JobRow)
    if queue is not None:
        query = query.where(JobRow.queue == queue)
    async with chancy.engine.connect() as connection:
        return int(await connection.scalar(query) or 0)


async def test_a_committed_session_push_wakes_after_the_commit_not_before(
    chancy: Chancy, notifications: asyncio.Queue[dict[str, str]]
) -> None:
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        await chancy.push("default", greet(), session=session)
        await chancy.wake_ups.flush()
        assert await events_before_a_marker(chancy, notifications) == []
        await session.commit()
    await chancy.wake_ups.flush()
    assert await events_before_a_marker(chancy, notifications) == [
        {"event": "pushed", "queue": "default"}
    ]


async def test_a_committed_session_push_wakes_an_idle_worker(database_url: URL) -> None:
    queues = [Queue(name="default", polling_interval=NEVER_POLLS)]
    async with Chancy(database_url, queues=queues) as chancy, Worker(chancy):
        warm_up = await chancy.push("default", greet("warm-up"))
        await chancy.wait_for_job(warm_up, timeout=10)  # the worker listens, and is idle
        async with AsyncSession(chancy.engine) as session, session.begin():
            ref = await chancy.push("default", greet("woken"), session=session)
        done = await chancy.wait_for_job(ref, timeout=10)
    assert done.state is JobState.SUCCEEDED


async def test_a_rolled_back_session_push_sends_no_wake_up(
    chancy: Chancy, notifications: asyncio.Queue[dict[str, str]]
) -> None:
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        await chancy.push_many("default", [greet(), greet()], session=session)
        await session.rollback()
        # The session's next transaction commits: the rolled-back push is not in it.
        async with session.begin():
            await session.execute(sa.text("SELECT 1"))
    await chancy.wake_ups.flush()
    assert chancy.wake_ups.sent == 0
    assert await events_before_a_marker(chancy, notifications) == []
    assert await count_jobs(chancy) == 0


async def test_many_concurrent_pushes_send_far_fewer_notifications(
    chancy: Chancy, notifications: asyncio.Queue[dict[str, str]]
) -> None:
    pushers, each = 16, 25

    async def pusher() -> None:
        for _ in range(each):
            await chancy.push("default", greet())

    await asyncio.gather(*(pusher() for _ in range(pushers)))
    await chancy.wake_ups.flush()
    events = await events_before_a_marker(chancy, notifications)
    assert events
    assert all(event == {"event": "pushed", "queue": "default"} for event in events)
    assert len(events) == chancy.wake_ups.sent
    assert len(events) <= pushers * each // 4


async def test_sequential_pushes_send_at_most_one_wake_up_per_window(chancy: Chancy) -> None:
    chancy.wake_ups.window = 0.5
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(20):
        await chancy.push("default", greet())
        await asyncio.sleep(0.01)  # longer than a send: each finds the last one done
    pushed_for = loop.time() - started
    await chancy.wake_ups.flush(timeout=2)
    # The first at once; then one per window, however briefly each send found nothing.
    assert 1 <= chancy.wake_ups.sent <= 2 + int(pushed_for / chancy.wake_ups.window)


async def test_a_failing_wake_up_fails_no_push_and_the_job_runs_by_polling(
    database_url: URL,
) -> None:
    queues = [Queue(name="default", polling_interval=0.2)]
    # A server that is not there: every wake-up of this coalescer fails to connect.
    nowhere = create_async_engine(
        database_url.set(host="127.0.0.1", port=1, query={}), connect_args={"timeout": 2}
    )
    async with Chancy(database_url, queues=queues) as chancy, Worker(chancy):
        chancy._wake_ups = WakeUps(nowhere)
        ref = await chancy.push("default", greet("polled"))
        async with AsyncSession(chancy.engine) as session, session.begin():
            in_session = await chancy.push("default", greet("polled too"), session=session)
        await chancy.wake_ups.flush(timeout=5)
        assert chancy.wake_ups.failed >= 1
        assert chancy.wake_ups.sent == 0
        for pushed in (ref, in_session):
            assert (await chancy.wait_for_job(pushed, timeout=10)).state is JobState.SUCCEEDED
    await nowhere.dispose()


async def test_a_push_on_the_apps_connection_announces_itself_at_commit(
    chancy: Chancy, notifications: asyncio.Queue[dict[str, str]]
) -> None:
    async with chancy.engine.connect() as connection:
        await connection.begin()
        await chancy.push("default", greet(), session=connection)
        await connection.commit()
    assert chancy.wake_ups.sent == 0
    assert await events_before_a_marker(chancy, notifications) == [
        {"event": "pushed", "queue": "default"}
    ]
