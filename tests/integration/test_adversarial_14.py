"""Hostile uses of issue 14's throughput changes: wake-ups after commit, split pushes,
fenced claims on held connections."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import sync
from chancy.app import Chancy
from chancy.errors import UnknownQueueError
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.repository import ClaimRepository
from chancy.states import JobState
from chancy.wakeups import thread_wake_ups
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks


def greet(name: str = "w") -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": name})


async def count_jobs(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) or 0)


async def backends(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        return int(
            await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = :name"
                ),
                {"name": name},
            )
            or 0
        )


async def test_a_session_committing_after_its_chancy_closed_opens_no_connection(
    database_url: URL,
) -> None:
    app_engine = create_async_engine(database_url)
    chancy = Chancy(
        database_url,
        engine_options={"connect_args": {"server_settings": {"application_name": "probe"}}},
    )
    await chancy.open()
    async with AsyncSession(app_engine) as session:
        await session.begin()
        await chancy.push("default", greet(), session=session)
        await chancy.close()
        await session.commit()
    await asyncio.sleep(0.3)
    assert await backends(app_engine, "probe") == 0
    assert await count_jobs(app_engine) == 1
    await app_engine.dispose()


def with_an_unknown_queue_in_the_third_statement() -> list[Job]:
    jobs = [greet(str(i)) for i in range(4_500)]
    jobs[4_400] = dataclasses.replace(jobs[4_400], queue="nope")
    return jobs


async def test_a_split_push_on_an_autocommit_connection_stores_all_or_nothing(
    chancy: Chancy,
) -> None:
    async with chancy.engine.connect() as connection:
        connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(UnknownQueueError):
            await chancy.push_many(
                with_an_unknown_queue_in_the_third_statement(), session=connection
            )
    assert await count_jobs(chancy.engine) == 0


async def test_a_split_push_in_an_autocommit_session_stores_all_or_nothing(
    chancy: Chancy,
) -> None:
    autocommit = chancy.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with AsyncSession(autocommit) as session:
        with pytest.raises(UnknownQueueError):
            await chancy.push_many(with_an_unknown_queue_in_the_third_statement(), session=session)
    assert await count_jobs(chancy.engine) == 0


def sync_push_on_autocommit(url: URL, *, in_session: bool) -> None:
    engine = sa.create_engine(
        url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as connection:
            target: sa.Connection | Session = Session(bind=connection) if in_session else connection
            with pytest.raises(UnknownQueueError):
                sync.push_many(target, with_an_unknown_queue_in_the_third_statement())
    finally:
        engine.dispose()


@pytest.mark.parametrize("in_session", [False, True], ids=["connection", "session"])
async def test_a_sync_split_push_on_an_autocommit_connection_stores_all_or_nothing(
    chancy: Chancy, database_url: URL, in_session: bool
) -> None:
    await asyncio.to_thread(sync_push_on_autocommit, database_url, in_session=in_session)
    assert await count_jobs(chancy.engine) == 0


async def test_unique_keys_duplicated_across_the_chunk_boundary(chancy: Chancy) -> None:
    held = await chancy.push("default", greet("held").with_unique_key("k-held"))
    jobs = [greet(str(i)) for i in range(4_001)]
    jobs[5] = jobs[5].with_unique_key("k-a")
    jobs[1_999] = jobs[1_999].with_unique_key("k-b")
    jobs[2_000] = jobs[2_000].with_unique_key("k-a")
    jobs[2_001] = jobs[2_001].with_unique_key("k-b")
    jobs[3_999] = jobs[3_999].with_unique_key("k-held")
    jobs[4_000] = jobs[4_000].with_unique_key("k-c")
    refs = await chancy.push_many("default", jobs)
    assert refs[2_000] == refs[5]
    assert refs[2_000].existing
    assert not refs[5].existing
    assert refs[2_001] == refs[1_999]
    assert refs[3_999] == held
    assert refs[3_999].existing
    for index in (0, 6, 1_998, 2_002, 3_998, 4_000):
        job = await chancy.get_job(refs[index])
        assert job is not None
        assert job.kwargs == {"name": str(index)}
    assert len({int(r) for r in refs}) == 4_001 - 2


def sync_pushes_in_sessions(engine: sa.Engine, sessions: int) -> None:
    """Push in ``sessions`` sessions one after the other, each after the last one's
    wake-up went out."""
    for _ in range(sessions):
        with Session(engine) as session, session.begin():
            sync.push(session, "default", greet())
        thread_wake_ups(engine).join(5)


async def test_sync_wake_ups_reuse_the_apps_pooled_connections(
    chancy: Chancy, database_url: URL
) -> None:
    await chancy.declare_configured()
    engine = sa.create_engine(database_url.set(drivername="postgresql+psycopg"))
    connected: list[object] = []
    sa.event.listen(engine, "connect", lambda *args: connected.append(args[0]))
    try:
        await asyncio.to_thread(sync_pushes_in_sessions, engine, 20)
        assert thread_wake_ups(engine).sent == 20
    finally:
        engine.dispose()
    assert len(connected) <= 2  # not a new connection per quiet commit
    assert await count_jobs(chancy.engine) == 20


def push_then_dispose(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        sync.push(session, "default", greet())
    engine.dispose()
    thread_wake_ups(engine).join(5)


async def test_a_sync_engine_disposed_right_after_a_commit_keeps_no_connection_open(
    chancy: Chancy, database_url: URL
) -> None:
    await chancy.declare_configured()
    for _ in range(5):
        engine = sa.create_engine(
            database_url.set(drivername="postgresql+psycopg"),
            connect_args={"application_name": "disposed"},
        )
        await asyncio.to_thread(push_then_dispose, engine)
    assert await backends(chancy.engine, "disposed") == 0


async def test_a_push_while_its_chancy_closes_opens_no_connection_after(database_url: URL) -> None:
    settings = {"server_settings": {"application_name": "closing"}}
    chancy = Chancy(database_url, engine_options={"connect_args": settings})
    await chancy.open()
    listener = await chancy.listener()
    stop = listener.stop

    async def push_then_stop() -> None:
        # A push of another task that completes while close() is under way.
        await chancy.push("default", greet())
        await stop()

    listener.stop = push_then_stop  # type: ignore[method-assign]
    await chancy.close()
    await asyncio.sleep(0.3)
    observer = create_async_engine(database_url)
    try:
        assert await backends(observer, "closing") == 0
        assert await count_jobs(observer) == 1
    finally:
        await observer.dispose()


async def test_a_mixed_queue_split_batch_keeps_each_job_in_its_place(chancy: Chancy) -> None:
    queues = ("default", "a", "b")
    jobs = [
        dataclasses.replace(greet(str(i)), queue=queues[i % 3]).with_priority(-(i % 7))
        for i in range(4_321)
    ]
    refs = await chancy.push_many(jobs)
    for index in (0, 1, 2, 1_999, 2_000, 2_001, 3_999, 4_000, 4_320):
        job = await chancy.get_job(refs[index])
        assert job is not None
        assert (job.queue, job.kwargs, job.priority) == (
            queues[index % 3],
            {"name": str(index)},
            -(index % 7),
        )


async def test_a_claim_cut_off_while_waiting_for_its_queues_turn_loses_no_job(
    database_url: URL,
) -> None:
    limited = Queue(name="limited", global_concurrency=2, polling_interval=0.2)
    async with Chancy(database_url, queues=[limited]) as chancy:
        await chancy.declare_configured()
        turn = sa.text("SELECT pg_advisory_xact_lock(:k, hashtext('limited'))").bindparams(
            k=int.from_bytes(b"chcl", "big", signed=True)
        )
        async with chancy.engine.connect() as blocker:
            await blocker.execute(turn)  # the queue's claimers wait for this transaction
            async with Worker(chancy, settings=WorkerSettings(lease_seconds=2)):
                ref = await chancy.push("limited", greet("cut"))
                waiting = sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%pg_advisory_xact_lock%' AND pid <> pg_backend_pid()"
                )
                async with chancy.engine.connect() as observer:
                    for _ in range(100):
                        pids = (await observer.execute(waiting)).scalars().all()
                        if pids:
                            break
                        await asyncio.sleep(0.05)
                    assert pids
                    for pid in pids:
                        await observer.execute(sa.select(sa.func.pg_terminate_backend(pid)))
                await blocker.rollback()
                done = await chancy.wait_for_job(ref, timeout=15)
        assert done.state is JobState.SUCCEEDED
        assert done.attempts == 1


async def test_a_seeded_random_generator_never_repeats_a_fence(chancy: Chancy) -> None:
    """An application that seeds PostgreSQL's random() (setseed, for reproducible
    sampling, say) on the connections a worker claims on must not make two claims of
    one job draw the same fencing token: the stale attempt would write over the new."""
    ref = await chancy.push("default", greet())
    fences = []
    async with chancy.engine.connect() as connection:
        for _ in range(2):
            await connection.execute(sa.select(sa.func.setseed(0.42)))
            (job,) = await ClaimRepository().claim_available(connection, "default", 1, "w")
            fences.append(job.fence)
            # Its lease ran out and the job is ready again, as the rescuer leaves it.
            await connection.execute(
                sa.update(JobRow).where(JobRow.id == int(ref)).values(state="pending")
            )
        await connection.rollback()
    assert fences[0] != fences[1]


# Two pushes of the same unique keys in opposite orders: each inserts the keys the other
# inserts last, and waits for them at the first one the other holds.
N_KEYS = 1_500


def keyed_both_ways(round_: int) -> tuple[list[Job], list[Job]]:
    keys = [f"r{round_}-k{i}" for i in range(N_KEYS)]
    forward = [greet(key).with_unique_key(key) for key in keys]
    return forward, forward[::-1]


@pytest.mark.parametrize("n_keys", [N_KEYS, 4_000], ids=["one-statement", "split"])
async def test_concurrent_pushes_of_the_same_unique_keys_both_succeed(
    chancy: Chancy, n_keys: int
) -> None:
    await chancy.declare_configured()
    forward = [greet(f"k{i}").with_unique_key(f"k{i}") for i in range(n_keys)]
    first, second = await asyncio.gather(
        chancy.push_many("default", forward), chancy.push_many("default", forward[::-1])
    )
    assert [int(r) for r in first] == [int(r) for r in second[::-1]]
    assert await count_jobs(chancy.engine) == n_keys


async def push_in_a_session(chancy: Chancy, jobs: list[Job]) -> list[int]:
    async with AsyncSession(chancy.engine) as session, session.begin():
        return [int(r) for r in await chancy.push_many("default", jobs, session=session)]


@pytest.mark.xfail(
    strict=True,
    reason="pushes in the application's transactions deadlock when their unique keys "
    "overlap in different orders; chancy cannot run the application's transaction again, "
    "and inserting in key order would give the batch's ids out of its order",
)
async def test_concurrent_session_pushes_of_the_same_unique_keys_both_succeed(
    chancy: Chancy,
) -> None:
    # Each application transaction pushes one key, then (once both did) the other's: they
    # cross every time (a race of two whole statements crosses only most of the time).
    await chancy.declare_configured()
    both_pushed_once = asyncio.Barrier(2)

    async def push_two(first: str, second: str) -> list[int]:
        async with AsyncSession(chancy.engine) as session, session.begin():
            one = await chancy.push("default", greet(first).with_unique_key(first), session=session)
            await both_pushed_once.wait()
            two = await chancy.push(
                "default", greet(second).with_unique_key(second), session=session
            )
            return [int(one), int(two)]

    forward, backward = await asyncio.gather(push_two("k1", "k2"), push_two("k2", "k1"))
    assert forward == backward[::-1]
