"""Queues in the database: declaring, pausing, and limits every worker honours."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.errors import UnknownQueueError
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import tasks


def nap(seconds: float = 0.0, label: str = "") -> Job:
    return Job.from_func(tasks.sleep_async, kwargs={"seconds": seconds, "label": label})


async def count_jobs(chancy: Chancy) -> int:
    async with chancy.engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) or 0)


@contextlib.asynccontextmanager
async def cluster(url: URL, queue: Queue, workers: int = 4) -> AsyncIterator[list[Chancy]]:
    """``workers`` workers, each with its own Chancy (engine, pool, LISTEN connection),
    as separate processes would have."""
    async with contextlib.AsyncExitStack() as stack:
        apps = []
        for _ in range(workers):
            app = await stack.enter_async_context(Chancy(url, queues=[queue]))
            await stack.enter_async_context(Worker(app))
            apps.append(app)
        yield apps


async def test_a_push_to_an_undeclared_queue_says_which_name_was_meant(chancy: Chancy) -> None:
    await chancy.declare("emails-outbound")
    with pytest.raises(UnknownQueueError, match="did you mean 'emails-outbound'") as caught:
        await chancy.push("emails-outbund", nap())
    assert "declare=True" in str(caught.value)
    assert await count_jobs(chancy) == 0


async def test_declare_true_declares_the_queue_with_the_push(chancy: Chancy) -> None:
    ref = await chancy.push("brand-new", nap(), declare=True)
    assert (await chancy.get_job(ref)).queue == "brand-new"  # type: ignore[union-attr]
    assert "brand-new" in [info.name for info in await chancy.list_queues()]


async def test_the_default_queue_is_always_declared(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.push(nap())  # no queues= given, no declare=True


async def test_list_queues_shows_limits_from_the_apps_queue_objects(database_url: URL) -> None:
    queue = Queue(name="limited", global_concurrency=3, rate_limit=10)
    async with Chancy(database_url, queues=[queue]) as chancy:
        await chancy.push("limited", nap())
        (info,) = [q for q in await chancy.list_queues() if q.name == "limited"]
    assert (info.global_concurrency, info.rate_limit, info.rate_period) == (3, 10, 1.0)
    assert info.limited
    assert not info.paused


async def test_a_paused_queue_keeps_its_jobs_until_resumed(database_url: URL) -> None:
    queue = Queue(name="pausable", concurrency=4, polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy, Worker(chancy):
        await chancy.pause_queue("pausable")
        ref = await chancy.push("pausable", nap(label="held"))
        await asyncio.sleep(1.0)  # several polls and the push's own wake-up
        assert (await chancy.get_job(ref)).state is JobState.PENDING  # type: ignore[union-attr]
        assert [q.paused for q in await chancy.list_queues() if q.name == "pausable"] == [True]
        resumed = asyncio.get_running_loop().time()
        await chancy.resume_queue("pausable")
        done = await chancy.wait_for_job(ref, timeout=10)
        assert asyncio.get_running_loop().time() - resumed < 1.0
    assert done.state is JobState.SUCCEEDED


async def test_a_pause_with_resume_at_ends_by_itself(database_url: URL) -> None:
    queue = Queue(name="nap-time", polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy, Worker(chancy):
        until = datetime.now(UTC) + timedelta(seconds=1)
        await chancy.pause_queue("nap-time", resume_at=until)
        ref = await chancy.push("nap-time", nap())
        done = await chancy.wait_for_job(ref, timeout=10)
    assert done.started_at is not None
    assert done.started_at >= until


async def test_pausing_an_unknown_queue_raises(chancy: Chancy) -> None:
    with pytest.raises(UnknownQueueError, match="did you mean 'default'"):
        await chancy.pause_queue("defualt")


async def running_now(chancy: Chancy, queue: str) -> int:
    async with chancy.engine.connect() as connection:
        statement = (
            sa.select(sa.func.count())
            .select_from(JobRow)
            .where(JobRow.queue == queue, JobRow.state == "running")
        )
        return int(await connection.scalar(statement) or 0)


async def test_global_concurrency_holds_across_four_workers(database_url: URL) -> None:
    queue = Queue(name="scarce", concurrency=5, global_concurrency=3, polling_interval=0.05)
    async with cluster(database_url, queue) as apps:
        refs = await apps[0].push_many("scarce", [nap(0.3)] * 15)
        most = 0
        while (n := await running_now(apps[0], "scarce")) or most == 0:
            most = max(most, n)
            await asyncio.sleep(0.01)
        done = [await apps[0].wait_for_job(ref, timeout=30) for ref in refs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    assert most == 3


async def test_a_rate_limit_holds_in_every_window_across_four_workers(database_url: URL) -> None:
    queue = Queue(name="metered", concurrency=10, rate_limit=10, polling_interval=0.05)
    async with cluster(database_url, queue) as apps:
        refs = await apps[0].push_many("metered", [nap()] * 35)
        done = [await apps[0].wait_for_job(ref, timeout=30) for ref in refs]
    starts = sorted(job.started_at for job in done if job.started_at is not None)
    assert len(starts) == 35
    for first in starts:
        window = [t for t in starts if first <= t < first + timedelta(seconds=1)]
        assert len(window) <= 10, f"{len(window)} starts in the second after {first}"
    assert starts[-1] - starts[0] >= timedelta(seconds=3)  # 35 starts at 10 a second


async def test_a_concurrency_key_limits_its_jobs_and_not_the_others(database_url: URL) -> None:
    queue = Queue(name="tenants", concurrency=8, polling_interval=0.05)
    async with cluster(database_url, queue, workers=2) as apps:
        keyed = [nap(0.3).with_concurrency_key("tenant-42", limit=2)] * 6
        refs = await apps[0].push_many("tenants", keyed + [nap(0.3)] * 4)
        most = 0
        async with apps[0].engine.connect() as connection:
            statement = sa.select(sa.func.count()).where(
                JobRow.concurrency_key == "tenant-42", JobRow.state == "running"
            )
            while True:
                most = max(most, int(await connection.scalar(statement) or 0))
                await connection.commit()
                states = {(await apps[0].get_job(r)).state for r in refs}  # type: ignore[union-attr]
                if states == {JobState.SUCCEEDED}:
                    break
                await asyncio.sleep(0.01)
    assert most == 2


async def test_a_rate_key_limits_starts_per_key(database_url: URL) -> None:
    queue = Queue(name="per-customer", concurrency=10, polling_interval=0.05)
    async with cluster(database_url, queue, workers=2) as apps:
        limited = nap().with_rate_key("customer-7", limit=2, period=timedelta(seconds=1))
        refs = await apps[0].push_many("per-customer", [limited] * 6 + [nap()] * 6)
        done = [await apps[0].wait_for_job(ref, timeout=30) for ref in refs]
    keyed = sorted(j.started_at for j in done if j.rate_key and j.started_at is not None)
    for first in keyed:
        assert len([t for t in keyed if first <= t < first + timedelta(seconds=1)]) <= 2
    others = [j.started_at for j in done if not j.rate_key and j.started_at is not None]
    assert max(others) < max(keyed)  # unkeyed jobs did not wait behind the key


async def test_retry_jobs_brings_back_every_failed_job_of_a_queue(chancy: Chancy) -> None:
    failing = Job.from_func(tasks.fail, kwargs={"message": "boom"})
    queue = Queue(name="bulk", concurrency=4, polling_interval=0.1)
    async with Worker(chancy, queues=[queue]):
        refs = await chancy.push_many("bulk", [failing] * 5)
        other = await chancy.push("other", failing)
        done = [await chancy.wait_for_job(ref, timeout=10) for ref in refs]
        assert {job.state for job in done} == {JobState.FAILED}
    assert await chancy.retry_jobs(state="failed", queue="bulk") == 5
    states = {(await chancy.get_job(ref)).state for ref in refs}  # type: ignore[union-attr]
    assert states == {JobState.PENDING}
    assert (await chancy.get_job(other)).state is JobState.PENDING  # type: ignore[union-attr]


async def test_a_job_scheduled_two_seconds_ahead_starts_on_time(database_url: URL) -> None:
    queue = Queue(name="default", polling_interval=0.2)
    async with Chancy(database_url, queues=[queue]) as chancy, Worker(chancy):
        ref = await chancy.push("default", nap().with_delay(timedelta(seconds=2)))
        stored = await chancy.get_job(ref)
        assert stored is not None
        assert stored.state is JobState.SCHEDULED
        done = await chancy.wait_for_job(ref, timeout=10)
    assert done.started_at is not None
    late = (done.started_at - stored.scheduled_at).total_seconds()  # type: ignore[operator]
    assert 0 <= late < 1.0


LIMITED = Queue(name="limited", global_concurrency=3, rate_limit=10, rate_period=timedelta(2))


async def limits_of(chancy: Chancy, name: str) -> tuple[int | None, int | None, float | None]:
    (info,) = [q for q in await chancy.list_queues() if q.name == name]
    return info.global_concurrency, info.rate_limit, info.rate_period


async def test_declaring_a_queue_by_name_keeps_its_limits(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare(LIMITED)
        await chancy.declare("limited")
        assert await limits_of(chancy, "limited") == (3, 10, 172800.0)


async def test_a_queue_declared_by_name_is_created_without_limits(chancy: Chancy) -> None:
    await chancy.declare("fresh")
    assert await limits_of(chancy, "fresh") == (None, None, None)


async def test_a_queue_object_states_its_limits_none_meaning_none(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare(LIMITED)
        await chancy.declare(Queue(name="limited"))
        assert await limits_of(chancy, "limited") == (None, None, None)


async def test_a_queue_with_declare_limits_false_keeps_the_stored_limits(
    database_url: URL,
) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare(LIMITED)
    pusher = Queue(name="limited", concurrency=5, declare_limits=False)
    async with Chancy(database_url, queues=[pusher]) as chancy:
        await chancy.push("limited", nap())
        assert await limits_of(chancy, "limited") == (3, 10, 172800.0)
