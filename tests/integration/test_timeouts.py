"""chancy's statements run with a lock_timeout and a statement_timeout: a stuck lock never
hangs a push or a worker, and the application's own settings stay its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import migrations, sync
from chancy.app import Chancy
from chancy.errors import ConfigurationError, LockTimeoutError, StatementTimeoutError
from chancy.executor import Job
from tests.support import tasks

LOCK_TIMEOUT = 0.3
KEY = "held"


def keyed_job() -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": "x"}).with_unique_key(KEY)


@pytest.fixture
async def app_engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    """The application's own engine: no timeouts of chancy's."""
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def held_key(app_engine: AsyncEngine) -> AsyncIterator[None]:
    """Another transaction pushed a job with unique key ``held`` and has not committed:
    a push of the same key waits for it (the unique index entry is locked)."""
    async with Chancy(engine=app_engine) as chancy, app_engine.connect() as connection:
        await connection.begin()
        await chancy.push(keyed_job(), session=connection)
        yield
        await connection.rollback()


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, lock_timeout=LOCK_TIMEOUT) as chancy:
        yield chancy


async def settings(connection: AsyncConnection) -> tuple[str | None, str | None]:
    """The connection's ``lock_timeout`` and ``statement_timeout`` now."""
    lock = (await connection.execute(sa.text("SHOW lock_timeout"))).scalar()
    statement = (await connection.execute(sa.text("SHOW statement_timeout"))).scalar()
    return lock, statement


@pytest.mark.usefixtures("held_key")
async def test_a_push_meeting_a_lock_fails_after_lock_timeout(app: Chancy) -> None:
    started = time.monotonic()
    with pytest.raises(LockTimeoutError) as caught:
        await app.push(keyed_job())
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"lock_timeout ({LOCK_TIMEOUT:g} s)" in message
    assert "Chancy(lock_timeout=" in message


@pytest.mark.usefixtures("held_key")
async def test_a_push_in_the_apps_transaction_meeting_a_lock_fails_after_lock_timeout(
    app: Chancy, app_engine: AsyncEngine
) -> None:
    async with app_engine.connect() as connection:
        await connection.execute(sa.text("SET lock_timeout = '17s'"))
        await connection.commit()
        await connection.begin()
        with pytest.raises(LockTimeoutError, match=r"lock_timeout \(0.3 s\)"):
            await app.push(keyed_job(), session=connection)
        await connection.rollback()
        assert await settings(connection) == ("17s", "0")


async def test_a_push_in_the_apps_transaction_leaves_its_settings_as_they_were(
    app: Chancy, app_engine: AsyncEngine
) -> None:
    async with app_engine.connect() as connection:
        await connection.execute(sa.text("SET lock_timeout = '17s'"))
        await connection.commit()
        await connection.begin()
        await connection.execute(sa.text("SET LOCAL statement_timeout = '23s'"))
        await app.push(keyed_job(), session=connection)
        assert await settings(connection) == ("17s", "23s")  # the rest of its transaction
        await connection.commit()
        assert await settings(connection) == ("17s", "0")  # its session


async def test_a_push_in_an_async_session_leaves_its_settings_as_they_were(
    app: Chancy, app_engine: AsyncEngine
) -> None:
    async with app_engine.connect() as connection:
        await connection.execute(sa.text("SET lock_timeout = '17s'"))
        await connection.commit()
        async with AsyncSession(bind=connection) as session:
            await app.push(keyed_job(), session=session)
            assert await session.scalar(sa.text("SHOW lock_timeout")) == "17s"
            await session.commit()
        assert await settings(connection) == ("17s", "0")


@pytest.mark.usefixtures("held_key")
async def test_statement_timeout_cancels_a_push_that_runs_too_long(database_url: URL) -> None:
    async with Chancy(database_url, lock_timeout=None, statement_timeout=0.3) as app:
        with pytest.raises(StatementTimeoutError, match=r"statement_timeout \(0.3 s\)"):
            await app.push(keyed_job())


@pytest.fixture
def sync_engine(database_url: URL) -> Iterator[Engine]:
    engine = sa.create_engine(database_url.set(drivername="postgresql+psycopg"))
    yield engine
    engine.dispose()


def sync_push_in_session(engine: Engine) -> tuple[BaseException | None, object]:
    """A sync push that meets the held key; the error, and the session's lock_timeout
    after its rollback."""
    with Session(engine) as session:
        session.execute(sa.text("SET lock_timeout = '17s'"))
        session.commit()
        try:
            sync.push(session, keyed_job(), lock_timeout=LOCK_TIMEOUT)
        except LockTimeoutError as exc:
            error: BaseException | None = exc
        else:
            error = None
        session.rollback()
        return error, session.scalar(sa.text("SHOW lock_timeout"))


@pytest.mark.usefixtures("held_key")
async def test_a_sync_push_meeting_a_lock_fails_after_lock_timeout_and_keeps_settings(
    sync_engine: Engine,
) -> None:
    error, after = await asyncio.to_thread(sync_push_in_session, sync_engine)
    assert isinstance(error, LockTimeoutError)
    assert after == "17s"


async def test_connections_chancy_creates_carry_its_timeouts(database_url: URL) -> None:
    async with Chancy(database_url) as app, app.engine.connect() as connection:
        assert await settings(connection) == ("5s", "30s")


async def test_timeouts_of_none_leave_the_servers_settings(database_url: URL) -> None:
    async with (
        Chancy(database_url, lock_timeout=None, statement_timeout=None) as app,
        app.engine.connect() as connection,
    ):
        assert await settings(connection) == ("0", "0")


async def test_an_engine_given_to_chancy_is_left_as_it_is(app_engine: AsyncEngine) -> None:
    async with Chancy(engine=app_engine) as app:
        await app.push(keyed_job())
    async with app_engine.connect() as connection:
        assert await settings(connection) == ("0", "0")


async def test_migrations_wait_for_each_other_longer_than_lock_timeout(
    empty_database_url: URL,
) -> None:
    """Concurrent migrators take turns on an advisory lock: chancy's lock_timeout must not
    fail the one that waits."""
    holder = create_async_engine(empty_database_url)
    try:
        async with holder.connect() as connection:
            await connection.begin()
            await connection.execute(sa.text(migrations.migration_lock_sql()))
            async with Chancy(empty_database_url, lock_timeout=0.1) as app:
                migrating = asyncio.ensure_future(app.migrate())
                await asyncio.sleep(0.5)  # the migration waits on the lock meanwhile
                assert not migrating.done()
                await connection.rollback()
                await migrating
                assert await migrations.current(app.engine) == migrations.head()
    finally:
        await holder.dispose()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("lock_timeout", 0), ("lock_timeout", -1.0), ("statement_timeout", float("nan"))],
)
def test_timeouts_must_be_positive_seconds(setting: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=f"{setting}="):
        Chancy("postgresql://h/db", **{setting: value})  # type: ignore[arg-type]
