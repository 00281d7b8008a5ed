"""A push is part of the application's own transaction: async or sync, any driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import sync, wakeups
from chancy.app import Chancy
from chancy.events import EVENTS_CHANNEL
from chancy.executor import Job
from chancy.models import JobRow
from tests.support import tasks
from tests.support.servers import asyncpg_dsn


class Boom(Exception):
    pass


def greet() -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": "tx"})


async def count(chancy: Chancy) -> int:
    async with chancy.engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) or 0)


@pytest.fixture
async def notifications(database_url: URL) -> AsyncIterator[asyncio.Queue[str]]:
    """Every notification on chancy's channel, then a marker the test sends last."""
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(EVENTS_CHANNEL, lambda *args: received.put_nowait(args[3]))
    yield received
    await listener.close()


async def pushes_announced(chancy: Chancy, received: asyncio.Queue[str]) -> int:
    """How many push notifications arrived before a marker sent now (once the wake-ups
    sent after commits, chancy's and the sync API's, went out)."""
    await chancy.wake_ups.flush(timeout=5)
    for engine in list(wakeups._THREAD_WAKE_UPS):
        await asyncio.to_thread(wakeups.thread_wake_ups(engine).join, 5)
    async with chancy.engine.connect() as connection:
        await connection.execute(sa.text(f"NOTIFY {EVENTS_CHANNEL}, 'marker'"))
        await connection.commit()
    pushed = 0
    while (payload := await asyncio.wait_for(received.get(), timeout=5)) != "marker":
        pushed += '"pushed"' in payload
    return pushed


# -- async session and connection -------------------------------------------------------


async def test_async_session_commit_keeps_the_job_and_wakes_workers(
    chancy: Chancy, notifications: asyncio.Queue[str]
) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        await chancy.push("default", greet(), session=session)
    assert await count(chancy) == 1
    assert await pushes_announced(chancy, notifications) == 1


async def test_async_session_rollback_leaves_nothing_and_wakes_no_one(
    chancy: Chancy, notifications: asyncio.Queue[str]
) -> None:
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        await chancy.push("default", greet(), session=session)
        await session.rollback()
    assert await count(chancy) == 0
    assert await pushes_announced(chancy, notifications) == 0


async def test_exception_in_the_apps_transaction_block_leaves_nothing(chancy: Chancy) -> None:
    async def push_then_fail() -> None:
        async with AsyncSession(chancy.engine) as session, session.begin():
            await chancy.push("default", greet(), session=session)
            raise Boom

    with pytest.raises(Boom):
        await push_then_fail()
    assert await count(chancy) == 0


async def test_async_savepoint_rolled_back_drops_only_its_jobs(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        kept = await chancy.push("default", greet(), session=session)
        savepoint = await session.begin_nested()
        dropped = await chancy.push_many("default", [greet(), greet()], session=session)
        await savepoint.rollback()
    assert await chancy.get_job(kept) is not None
    assert [await chancy.get_job(ref) for ref in dropped] == [None, None]


async def test_async_savepoint_committed_inside_a_rolled_back_transaction_is_gone(
    chancy: Chancy,
) -> None:
    async with AsyncSession(chancy.engine) as session:
        await session.begin()
        async with session.begin_nested():
            await chancy.push("default", greet(), session=session)
        await session.rollback()
    assert await count(chancy) == 0


async def test_async_connection_commit_and_rollback(chancy: Chancy) -> None:
    async with chancy.engine.connect() as connection:
        await connection.begin()
        kept = await chancy.push("default", greet(), session=connection)
        await connection.commit()
        await connection.begin()
        dropped = await chancy.push("default", greet(), session=connection)
        await connection.rollback()
    assert await chancy.get_job(kept) is not None
    assert await chancy.get_job(dropped) is None


async def test_push_in_a_session_changes_none_of_its_settings(chancy: Chancy) -> None:
    async with AsyncSession(chancy.engine) as session, session.begin():
        before = await session.scalar(sa.text("SELECT current_setting('statement_timeout')"))
        await chancy.push("default", greet(), session=session)
        assert await session.scalar(sa.text("SELECT current_setting('statement_timeout')")) == (
            before
        )


# -- the application's engine -----------------------------------------------------------


async def test_chancy_uses_the_apps_engine_and_leaves_it_usable(database_url: URL) -> None:
    engine = create_async_engine(database_url, pool_size=3)
    async with Chancy(engine=engine) as chancy:
        assert chancy.engine is engine
        ref = await chancy.push("default", greet())
    async with engine.connect() as connection:  # still open after Chancy closed
        assert await connection.scalar(sa.select(JobRow.id).where(JobRow.id == ref.id)) == ref.id
    await engine.dispose()


# -- sync sessions on psycopg 3 and psycopg2 ----------------------------------------------


@pytest.fixture(params=["psycopg", "psycopg2"])
def sync_engine(request: pytest.FixtureRequest, database_url: URL) -> Iterator[Engine]:
    pytest.importorskip(request.param)
    engine = sa.create_engine(database_url.set(drivername=f"postgresql+{request.param}"))
    yield engine
    engine.dispose()


def in_session(engine: Engine, body: Callable[[Session], None], *, commit: bool) -> None:
    with Session(engine) as session:
        session.begin()
        body(session)
        if commit:
            session.commit()
        else:
            session.rollback()


async def test_sync_session_commit_keeps_the_job_and_wakes_workers(
    chancy: Chancy, sync_engine: Engine, notifications: asyncio.Queue[str]
) -> None:
    refs: list[object] = []

    def body(session: Session) -> None:
        refs.append(sync.push(session, "default", greet()))
        refs.extend(sync.push_many(session, "default", [greet(), greet().with_priority(-1)]))

    await asyncio.to_thread(in_session, sync_engine, body, commit=True)
    assert len(refs) == 3
    assert await count(chancy) == 3
    assert await pushes_announced(chancy, notifications) == 1


async def test_sync_session_rollback_leaves_nothing_and_wakes_no_one(
    chancy: Chancy, sync_engine: Engine, notifications: asyncio.Queue[str]
) -> None:
    def body(session: Session) -> None:
        sync.push(session, greet())

    await asyncio.to_thread(in_session, sync_engine, body, commit=False)
    assert await count(chancy) == 0
    assert await pushes_announced(chancy, notifications) == 0


async def test_sync_exception_in_the_transaction_block_leaves_nothing(
    chancy: Chancy, sync_engine: Engine
) -> None:
    def fail() -> None:
        with Session(sync_engine) as session, session.begin():
            sync.push(session, "default", greet())
            raise Boom

    with pytest.raises(Boom):
        await asyncio.to_thread(fail)
    assert await count(chancy) == 0


async def test_sync_savepoint_rolled_back_drops_only_its_jobs(
    chancy: Chancy, sync_engine: Engine
) -> None:
    def body(session: Session) -> None:
        sync.push(session, "default", greet())
        savepoint = session.begin_nested()
        sync.push(session, "default", greet())
        savepoint.rollback()

    await asyncio.to_thread(in_session, sync_engine, body, commit=True)
    assert await count(chancy) == 1


async def test_sync_unique_keys_and_round_trip(chancy: Chancy, sync_engine: Engine) -> None:
    job = greet().with_unique_key("sync-once").with_meta({"tenant": "t"}).with_delay(60)
    refs: list[object] = []

    def body(session: Session) -> None:
        refs.extend([sync.push(session, job), sync.push(session, job)])

    await asyncio.to_thread(in_session, sync_engine, body, commit=True)
    assert refs[0] == refs[1]
    stored = await chancy.get_job(refs[0])  # type: ignore[arg-type]
    assert stored is not None
    assert (stored.unique_key, dict(stored.meta), stored.state.value) == (
        "sync-once",
        {"tenant": "t"},
        "scheduled",
    )
