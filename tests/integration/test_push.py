"""Pushing jobs and reading them back, against real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncSession

from chancy.app import Chancy
from chancy.database import hot_connection
from chancy.errors import (
    InvalidJobError,
    InvalidQueueError,
    QueueNotEmptyError,
    UnknownQueueError,
)
from chancy.events import EVENTS_CHANNEL
from chancy.executor import Job, QueuedJob, Reference
from chancy.models import JobRow
from chancy.queue import Queue
from chancy.states import JobState
from tests.support import tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async


def greet(name: str = "world") -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": name})


async def test_push_returns_a_reference_and_get_job_reads_it_back(chancy: Chancy) -> None:
    job = greet().with_priority(5).with_max_attempts(3).with_meta({"tenant": "t1"})
    ref = await chancy.push("default", job.with_timeout(30))
    assert isinstance(ref, Reference)
    stored = await chancy.get_job(ref)
    assert isinstance(stored, QueuedJob)
    assert stored.id == ref.id
    assert stored.job == job.with_timeout(30).with_scheduled_at(stored.scheduled_at)  # type: ignore[arg-type]
    assert stored.state is JobState.PENDING
    assert (stored.attempts, stored.errors, stored.result) == (0, (), None)
    assert stored.created_at <= stored.scheduled_at  # type: ignore[operator]


async def test_get_job_of_unknown_id_is_none(chancy: Chancy) -> None:
    assert await chancy.get_job(Reference(987654321)) is None


async def test_push_job_alone_uses_the_jobs_queue(chancy: Chancy) -> None:
    ref = await chancy.push(greet().with_queue("emails"))
    default_ref = await chancy.push(greet())
    assert (await chancy.get_job(ref)).queue == "emails"  # type: ignore[union-attr]
    assert (await chancy.get_job(default_ref)).queue == "default"  # type: ignore[union-attr]


async def test_pushing_the_same_job_twice_makes_two_jobs(chancy: Chancy) -> None:
    job = greet()
    first, second = await chancy.push("default", job), await chancy.push("default", job)
    assert first != second
    assert {(await chancy.get_job(r)).func for r in (first, second)} == {job.func}  # type: ignore[union-attr]


async def test_push_many_returns_references_in_order(chancy: Chancy) -> None:
    jobs = [greet(f"n{i}") for i in range(2_000)]
    refs = await chancy.push_many("bulk", jobs)
    assert len(refs) == 2_000
    assert [r.id for r in refs] == sorted(r.id for r in refs)
    for i in (0, 999, 1_999):
        stored = await chancy.get_job(refs[i])
        assert stored is not None
        assert (stored.kwargs["name"], stored.queue) == (f"n{i}", "bulk")


async def test_push_many_is_one_statement_and_one_round_trip(database_url: URL) -> None:
    sent: list[str] = []
    options = {"pool_size": 1, "max_overflow": 0}  # one connection: the one watched
    async with Chancy(database_url, queues=[Queue(name="bulk")], engine_options=options) as chancy:
        await chancy.push_many("bulk", [greet(), greet()])  # asyncpg's first prepare of the
        await chancy.push("bulk", greet())  # statements also reads the types they use
        async with hot_connection(chancy.engine) as connection:
            assert isinstance(connection, asyncpg.Connection)
            connection.add_query_logger(lambda query: sent.append(query.query))
        await chancy.push_many("bulk", [greet() for _ in range(500)])
        await chancy.push("bulk", greet())
    # The wake-ups after the commits go on a connection of the pool too (here, the one).
    pushes = [query for query in sent if "pg_notify('chancy_events', payload)" not in query]
    assert len(pushes) == 2  # no BEGIN or COMMIT: each push is one autocommitted statement
    assert all(query.lstrip().startswith("WITH known AS") for query in pushes)
    assert "unnest" in pushes[0]


async def test_push_many_with_each_jobs_own_queue(chancy: Chancy) -> None:
    refs = await chancy.push_many([greet().with_queue("a"), greet().with_queue("b")])
    assert [(await chancy.get_job(r)).queue for r in refs] == ["a", "b"]  # type: ignore[union-attr]


async def test_push_to_an_invalid_queue_stores_nothing(chancy: Chancy) -> None:
    with pytest.raises(InvalidQueueError):
        await chancy.push("no spaces allowed", greet())
    assert await count_jobs(chancy) == 0


async def test_push_of_something_that_is_not_a_job_is_refused(chancy: Chancy) -> None:
    with pytest.raises(InvalidJobError, match=r"wrap functions with Job\.from_func"):
        await chancy.push("default", tasks.greet)  # type: ignore[call-overload]


async def test_future_job_is_scheduled_and_due_job_is_pending(chancy: Chancy) -> None:
    future = await chancy.push(greet().with_scheduled_at(datetime.now(UTC) + timedelta(hours=1)))
    past = await chancy.push(greet().with_scheduled_at(datetime.now(UTC) - timedelta(hours=1)))
    delayed = await chancy.push(greet().with_delay(3600))
    assert (await chancy.get_job(future)).state is JobState.SCHEDULED  # type: ignore[union-attr]
    assert (await chancy.get_job(past)).state is JobState.PENDING  # type: ignore[union-attr]
    stored = await chancy.get_job(delayed)
    assert stored is not None
    assert stored.state is JobState.SCHEDULED
    assert stored.scheduled_at - stored.created_at == timedelta(hours=1)  # type: ignore[operator]


async def test_unique_key_push_returns_the_unfinished_holder(chancy: Chancy) -> None:
    job = greet().with_unique_key("report-42")
    first = await chancy.push(job)
    again = await chancy.push(job.with_priority(3))
    in_batch = await chancy.push_many([job, greet(), job])
    assert again == first
    assert in_batch[0] == first
    assert in_batch[2] == first
    assert await count_jobs(chancy) == 2


async def test_unique_key_is_free_again_once_the_holder_finished(chancy: Chancy) -> None:
    first = await chancy.push(greet().with_unique_key("k"))
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(JobRow).where(JobRow.id == first.id).values(state="succeeded")
        )
    assert await chancy.push(greet().with_unique_key("k")) != first


async def test_concurrent_pushes_of_one_unique_key_make_one_job(database_url: URL) -> None:
    async with Chancy(database_url, engine_options={"pool_size": 10}) as chancy:
        job = greet().with_unique_key("once")
        refs = await asyncio.gather(*(chancy.push(job) for _ in range(20)))
        assert len(set(refs)) == 1
        assert await count_jobs(chancy) == 1


async def test_push_in_a_session_that_commits_keeps_the_job(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        ref = await chancy.push("default", greet(), session=session)
    assert await chancy.get_job(ref) is not None


async def test_push_in_a_session_that_rolls_back_leaves_nothing(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        ref = await chancy.push("default", greet(), session=session)
        await session.rollback()
    assert await chancy.get_job(ref) is None
    assert await count_jobs(chancy) == 0


async def test_push_notifies_listeners_only_at_commit(chancy: Chancy, database_url: URL) -> None:
    await chancy.declare_configured()  # its queue_changed events come before the listener
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(EVENTS_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        async with chancy.engine.connect() as connection:
            transaction = await connection.begin()
            await chancy.push_many("default", [greet(), greet()], session=connection)
            await transaction.rollback()
            transaction = await connection.begin()
            await chancy.push_many("mail", [greet(), greet()], session=connection)
            await transaction.commit()
        await listener.execute(f"NOTIFY {EVENTS_CHANNEL}, 'marker'")
        # Notifications arrive in commit order: the rolled-back push sent none, and the
        # committed one sent exactly one before the marker.
        first = await asyncio.wait_for(received.get(), timeout=5)
        second = await asyncio.wait_for(received.get(), timeout=5)
        assert first == '{"event" : "pushed", "queue" : "mail"}'
        assert second == "marker"
    finally:
        await listener.close()


async def count_jobs(chancy: Chancy) -> int:
    async with chancy.engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) or 0)


async def test_a_push_cut_off_mid_statement_leaves_no_busy_connection_in_the_pool(
    database_url: URL,
) -> None:
    options = {"pool_size": 1, "max_overflow": 0}  # the next push gets the same slot
    async with Chancy(database_url, engine_options=options) as chancy:
        blocker = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            await blocker.execute("BEGIN")
            await blocker.execute("LOCK TABLE chancy_jobs IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(chancy.push("default", greet()), timeout=0.3)
            await blocker.execute("ROLLBACK")
        finally:
            await blocker.close()
        ref = await chancy.push("default", greet("after"))
        assert (await chancy.get_job(ref)).kwargs["name"] == "after"  # type: ignore[union-attr]


async def test_a_failed_push_of_a_keyed_job_leaves_its_queue_unkeyed(chancy: Chancy) -> None:
    await chancy.declare("tenants")
    keyed = greet().with_concurrency_key("tenant-42").with_queue("tenants")
    with pytest.raises(UnknownQueueError):  # the batch's second job names no queue
        await chancy.push_many([keyed, greet().with_queue("nowhere")])
    (info,) = [q for q in await chancy.list_queues() if q.name == "tenants"]
    assert not info.keyed
    assert await count_jobs(chancy) == 0


async def test_a_keyed_push_is_one_statement(database_url: URL) -> None:
    sent: list[str] = []
    options = {"pool_size": 1, "max_overflow": 0}  # one connection: the one watched
    async with Chancy(database_url, queues=[Queue(name="k")], engine_options=options) as chancy:
        await chancy.push("k", greet())  # asyncpg's first prepare reads the types
        async with hot_connection(chancy.engine) as connection:
            assert isinstance(connection, asyncpg.Connection)
            connection.add_query_logger(lambda query: sent.append(query.query))
        await chancy.push("k", greet().with_rate_key("customer-7", limit=2))
        (info,) = [q for q in await chancy.list_queues() if q.name == "k"]
    writes = [query for query in sent if "INSERT" in query or "UPDATE" in query]
    assert len(writes) == 1, writes  # the insert, with the keyed mark in it
    assert info.keyed


async def test_a_reference_says_whether_the_push_found_an_existing_job(chancy: Chancy) -> None:
    job = Job.from_func(tasks.greet, kwargs={"name": "x"}, unique_key="once")
    first = await chancy.push("default", job)
    again, beside = await chancy.push_many("default", [job, job.with_unique_key("other")])
    assert (first.existing, again.existing, beside.existing) == (False, True, False)
    assert again == first


# -- batches past one statement's 2,000 jobs, and the queue check in the statement ------


async def test_an_unknown_queue_in_a_5000_job_batch_stores_nothing(chancy: Chancy) -> None:
    await chancy.declare("bulk")
    jobs = [greet(f"n{i}") for i in range(5_000)]
    jobs[4_321] = jobs[4_321].with_queue("bulkk")  # in the batch's third statement
    with pytest.raises(UnknownQueueError, match="did you mean 'bulk'"):
        await chancy.push_many(jobs)
    assert await count_jobs(chancy) == 0


async def test_an_unknown_queue_in_a_session_batch_fails_the_push(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        # In the application's aborted transaction the declared queues cannot be read,
        # so the message may name any queue of the batch.
        with pytest.raises(UnknownQueueError, match="is not declared"):
            await chancy.push_many(
                [greet()] * 2_500 + [greet().with_queue("nowhere")], session=session
            )
        await session.rollback()
    assert await count_jobs(chancy) == 0


async def test_a_5000_job_batch_keeps_input_order_and_unique_keys(chancy: Chancy) -> None:
    held = await chancy.push(greet("held").with_unique_key("held"))
    jobs = [greet(f"n{i}").with_priority(i % 3) for i in range(5_000)]
    jobs[10] = jobs[10].with_unique_key("twice")
    jobs[4_990] = jobs[4_990].with_unique_key("twice")  # the first one's, two statements on
    jobs[2_500] = jobs[2_500].with_unique_key("held")
    jobs[3_000] = jobs[3_000].with_meta({"only": "one"})
    refs = await chancy.push_many("default", jobs)
    assert len(refs) == 5_000
    assert refs[4_990] == refs[10]
    assert refs[4_990].existing
    assert not refs[10].existing
    assert refs[2_500] == held
    assert refs[2_500].existing
    new = [ref.id for i, ref in enumerate(refs) if i not in (2_500, 4_990)]
    assert new == sorted(new)
    assert len(set(new)) == len(new)
    assert await count_jobs(chancy) == 1 + 4_998
    for i in (0, 10, 1_999, 2_000, 3_000, 4_999):
        stored = await chancy.get_job(refs[i])
        assert stored is not None
        assert (stored.kwargs["name"], stored.priority) == (f"n{i}", i % 3)
        assert dict(stored.meta) == ({"only": "one"} if i == 3_000 else {})


async def test_a_push_waits_for_a_deletion_of_its_queue_and_then_fails(chancy: Chancy) -> None:
    await chancy.declare("doomed")
    async with chancy.engine.connect() as deleting:
        await deleting.begin()
        assert await chancy._queues.lock_for_delete(deleting, "doomed") == {}
        await chancy._queues.delete(deleting, "doomed")
        push = asyncio.create_task(chancy.push_many("doomed", [greet(), greet()]))
        await until_async(lambda: waiting_for_a_lock(chancy), what="the push to wait")
        await deleting.commit()
    with pytest.raises(UnknownQueueError):
        await push
    assert await count_jobs(chancy) == 0


async def test_a_deletion_waits_for_a_push_under_way_and_then_sees_its_job(
    chancy: Chancy,
) -> None:
    await chancy.declare("busy")
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        await chancy.push("busy", greet(), session=session)
        delete = asyncio.create_task(chancy.delete_queue("busy"))
        await until_async(lambda: waiting_for_a_lock(chancy), what="the deletion to wait")
        await session.commit()
    with pytest.raises(QueueNotEmptyError, match="1 job"):
        await delete
    assert "busy" in [queue.name for queue in await chancy.list_queues()]


async def waiting_for_a_lock(chancy: Chancy) -> bool:
    async with chancy.engine.connect() as connection:
        waiting = await connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)


def big(index: int, queue: str = "default") -> Job:
    """A job with about 1 MB of kwargs (under the default 1 MiB limit): 70 of them are
    more JSON than one statement carries (CHUNK_BYTES)."""
    return Job.from_func(tasks.greet, kwargs={"name": f"{index:03d}" + "x" * 1_000_000}).with_queue(
        queue
    )


async def test_a_batch_of_large_jobs_is_split_by_bytes_in_one_transaction(chancy: Chancy) -> None:
    jobs = [big(i) for i in range(70)]
    refs = await chancy.push_many(jobs)
    assert [ref.id for ref in refs] == sorted(ref.id for ref in refs)
    async with chancy.engine.connect() as connection:
        rows = (
            await connection.execute(
                sa.text(
                    "SELECT id, left(kwargs->>'name', 3) AS name, xmin::text AS tx "
                    "FROM chancy_jobs ORDER BY id"
                )
            )
        ).all()
    assert [row.id for row in rows] == [ref.id for ref in refs]
    assert [row.name for row in rows] == [f"{i:03d}" for i in range(70)]
    assert len({row.tx for row in rows}) == 1  # one transaction


async def test_an_unknown_queue_in_the_last_statement_of_large_jobs_stores_nothing(
    chancy: Chancy,
) -> None:
    jobs = [big(i) for i in range(69)] + [big(69, queue="nowhere")]
    with pytest.raises(UnknownQueueError, match="'nowhere' is not declared"):
        await chancy.push_many(jobs)
    assert await count_jobs(chancy) == 0


async def test_concurrent_pushes_of_large_jobs_each_get_their_own_job(chancy: Chancy) -> None:
    # Grouped (group commit) into batches of more JSON than one statement carries.
    refs = await asyncio.gather(*(chancy.push(big(i)) for i in range(70)))
    assert len({ref.id for ref in refs}) == 70
    for index in (0, 35, 69):
        stored = await chancy.get_job(refs[index])
        assert stored is not None
        assert stored.kwargs["name"].startswith(f"{index:03d}x")
