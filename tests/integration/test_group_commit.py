"""Group commit: concurrent single-job pushes of one Chancy sent together, each with the
outcome it would have had alone; the connection the grouped pushes keep."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.database.engine import create_engine
from chancy.errors import InvalidKwargsError, UnknownQueueError
from chancy.executor import Reference
from chancy.queue import Queue
from tests.support.pushes import greet, names_stored
from tests.support.waiting import until

CONCURRENT = 200


async def test_a_lone_producer_sends_each_push_at_once(chancy: Chancy) -> None:
    for i in range(20):
        await chancy.push("default", greet(f"n{i}"))
    assert chancy._group_commit.batches == 0


async def test_concurrent_pushes_go_together_and_each_gets_its_own_reference(
    chancy: Chancy,
) -> None:
    await chancy.push("default", greet("warm-up"))
    refs = await asyncio.gather(
        *(chancy.push("default", greet(f"n{i}")) for i in range(CONCURRENT))
    )
    assert chancy._group_commit.batches >= 1
    assert len({ref.id for ref in refs}) == CONCURRENT
    assert not any(ref.existing for ref in refs)
    for i in (0, 1, CONCURRENT // 2, CONCURRENT - 1):
        stored = await chancy.get_job(refs[i])
        assert stored is not None
        assert stored.kwargs["name"] == f"n{i}"
    # Ids follow the order of the calls, as sequential pushes' would.
    assert [ref.id for ref in refs] == sorted(ref.id for ref in refs)
    assert (await names_stored(chancy))[f"n{CONCURRENT - 1}"] == 1


async def test_a_bad_push_among_concurrent_ones_fails_alone(chancy: Chancy) -> None:
    await chancy.push("default", greet("warm-up"))
    bad = CONCURRENT // 2
    results = await asyncio.gather(
        *(
            chancy.push("nowhere" if i == bad else "default", greet(f"n{i}"))
            for i in range(CONCURRENT)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[bad], UnknownQueueError)
    assert all(isinstance(r, Reference) for i, r in enumerate(results) if i != bad)
    stored = await names_stored(chancy)
    assert f"n{bad}" not in stored
    assert all(stored[f"n{i}"] == 1 for i in range(CONCURRENT) if i != bad)


async def test_a_push_over_the_kwargs_limit_among_concurrent_ones_fails_alone(
    database_url: URL,
) -> None:
    async with Chancy(database_url, max_kwargs_bytes=100) as chancy:
        await chancy.push("default", greet("warm-up"))
        big = 7
        results = await asyncio.gather(
            *(
                chancy.push("default", greet(("x" * 200) if i == big else f"n{i}"))
                for i in range(CONCURRENT)
            ),
            return_exceptions=True,
        )
        assert isinstance(results[big], InvalidKwargsError)
        assert sum(isinstance(r, Reference) for r in results) == CONCURRENT - 1
        assert sum((await names_stored(chancy)).values()) == CONCURRENT  # and the warm-up


async def test_colliding_unique_keys_resolve_as_sequential_pushes_would(chancy: Chancy) -> None:
    await chancy.push("default", greet("warm-up"))
    keyed = greet("keyed").with_unique_key("one-key")
    jobs = [keyed if i % 3 == 0 else greet(f"n{i}") for i in range(CONCURRENT)]
    refs = await asyncio.gather(*(chancy.push("default", job) for job in jobs))
    assert chancy._group_commit.batches >= 1
    keyed_refs = [ref for ref, job in zip(refs, jobs, strict=True) if job is keyed]
    assert len({ref.id for ref in keyed_refs}) == 1
    # The first push of the key inserted it; every later one found it.
    assert [ref.existing for ref in keyed_refs] == [False] + [True] * (len(keyed_refs) - 1)
    assert (await names_stored(chancy))["keyed"] == 1


async def test_a_push_held_by_an_earlier_job_gets_that_jobs_reference(chancy: Chancy) -> None:
    first = await chancy.push("default", greet("keyed").with_unique_key("held"))
    refs = await asyncio.gather(
        *(chancy.push("default", greet("keyed").with_unique_key("held")) for _ in range(20))
    )
    assert {ref.id for ref in refs} == {first.id}
    assert all(ref.existing for ref in refs)


async def test_a_cancelled_waiting_push_stores_nothing_and_loses_no_other(
    chancy: Chancy,
) -> None:
    await chancy.push("default", greet("warm-up"))
    pushes = [
        asyncio.ensure_future(chancy.push("default", greet(f"n{i}"))) for i in range(CONCURRENT)
    ]
    await asyncio.sleep(0)  # each push has run up to its wait: the first is in flight
    assert len(chancy._group_commit._queue) == CONCURRENT - 1
    cancelled = {i for i in range(1, CONCURRENT) if i % 5 == 0}
    for i in cancelled:
        pushes[i].cancel()
    results = await asyncio.gather(*pushes, return_exceptions=True)
    stored = await names_stored(chancy)
    for i, result in enumerate(results):
        if i in cancelled:
            assert isinstance(result, asyncio.CancelledError)
            assert f"n{i}" not in stored  # taken out before it was sent
        else:
            assert isinstance(result, Reference)
            assert stored[f"n{i}"] == 1
            assert (await chancy.get_job(result)).kwargs["name"] == f"n{i}"  # type: ignore[union-attr]


async def test_a_push_cancelled_once_its_batch_is_sent_is_stored_and_others_too(
    chancy: Chancy,
) -> None:
    await chancy.push("default", greet("warm-up"))
    pushes = [
        asyncio.ensure_future(chancy.push("default", greet(f"n{i}"))) for i in range(CONCURRENT)
    ]
    group = chancy._group_commit
    await pushes[0]  # sent at once; when it came back, the others went as one batch
    assert not group._queue
    assert group._tasks
    in_batch = {i for i in range(1, CONCURRENT) if not pushes[i].done()}
    assert len(in_batch) == CONCURRENT - 1
    cancelled = {i for i in in_batch if i % 7 == 0}
    for i in cancelled:
        pushes[i].cancel()
    results = await asyncio.gather(*pushes, return_exceptions=True)
    stored = await names_stored(chancy)
    assert all(count == 1 for count in stored.values())  # nothing twice
    for i, result in enumerate(results):
        if i in cancelled:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert isinstance(result, Reference)
        assert stored[f"n{i}"] == 1  # the batch went on without its cancelled callers


async def test_close_waits_for_the_batch_in_flight(database_url: URL) -> None:
    chancy = Chancy(database_url)
    await chancy.open()
    await chancy.push("default", greet("warm-up"))
    pushes = [
        asyncio.ensure_future(chancy.push("default", greet(f"n{i}"))) for i in range(CONCURRENT)
    ]
    await pushes[0]  # the others are now in flight, as one batch
    assert chancy._group_commit._tasks
    await chancy.close()
    assert all(isinstance(r, Reference) for r in await asyncio.gather(*pushes))


@pytest.mark.parametrize(("pool_size", "kept"), [(2, 1), (3, 2), (5, 2)])
async def test_the_kept_connections_go_back_to_the_applications_pool_at_close(
    database_url: URL, pool_size: int, kept: int
) -> None:
    # One for the grouped pushes, one for the wake-ups: never the pool's last.
    engine = create_engine(database_url, pool_size=pool_size)
    try:
        async with Chancy(engine=engine) as chancy:
            await chancy.push("default", greet("a"))
            await asyncio.gather(*(chancy.push("default", greet(f"n{i}")) for i in range(50)))
            await chancy.wake_ups.flush()
            assert engine.sync_engine.pool.checkedout() == kept  # type: ignore[attr-defined]
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_pushes_racing_close_succeed_and_keep_no_connection(database_url: URL) -> None:
    engine = create_engine(database_url, pool_size=5)
    try:
        chancy = Chancy(engine=engine)
        await chancy.open()
        await chancy.push("default", greet("warm-up"))
        pushes = [asyncio.ensure_future(chancy.push("default", greet(f"n{i}"))) for i in range(100)]
        await asyncio.sleep(0)  # the first is in flight, the others wait
        await chancy.close()
        assert all(push.done() for push in pushes)  # close waited for them
        late = [asyncio.ensure_future(chancy.push("default", greet(f"late{i}"))) for i in range(20)]
        results = await asyncio.gather(*pushes, *late)
        assert all(isinstance(r, Reference) for r in results)
        pool = engine.sync_engine.pool
        await until(lambda: pool.checkedout() == 0, what="every connection back in the pool")  # type: ignore[attr-defined]
        assert sum((await names_stored(chancy)).values()) == 121
    finally:
        await engine.dispose()


@pytest.mark.parametrize("options", [{"pool_size": 1}, {"poolclass": sa.pool.NullPool}])
async def test_no_connection_is_kept_from_a_pool_that_cannot_spare_one(
    database_url: URL, options: dict[str, Any]
) -> None:
    engine = create_engine(database_url, **options)
    try:
        async with Chancy(engine=engine) as chancy:
            await asyncio.gather(*(chancy.push("default", greet(f"n{i}")) for i in range(20)))
            await chancy.wake_ups.flush()
            pool = engine.sync_engine.pool
            assert getattr(pool, "checkedout", lambda: 0)() == 0
            assert sum((await names_stored(chancy)).values()) == 20
    finally:
        await engine.dispose()


async def test_a_kept_connection_the_server_ended_is_replaced(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        await chancy.push("default", greet("before"))
        async with chancy.engine.connect() as connection:
            await connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        await asyncio.sleep(0.05)  # the event loop sees the kept connection close
        await chancy.push("default", greet("after"))
        assert set(await names_stored(chancy)) == {"before", "after"}
