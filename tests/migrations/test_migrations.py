"""The migrations are the only source of the schema, and they round-trip."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from chancy import migrations
from chancy.app import Chancy
from chancy.database import create_engine
from chancy.errors import SchemaError
from chancy.executor import Job
from chancy.models import metadata
from tests.support import tasks
from tests.support.schema import reflect

ROOT = Path(__file__).resolve().parents[2]


async def run(url: URL, action: str, revision: str) -> None:
    engine = create_engine(url, poolclass=NullPool)
    try:
        await getattr(migrations, action)(engine, revision)
    finally:
        await engine.dispose()


async def test_upgrade_head_equals_create_all(database_url: URL, empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url, poolclass=NullPool)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    await engine.dispose()
    migrated = await reflect(database_url)
    created = await reflect(empty_database_url)
    assert migrated.pop(migrations.VERSION_TABLE)
    assert migrated == created


async def test_alembic_check_reports_no_drift(database_url: URL) -> None:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(lambda sync: command.check(migrations.alembic_config(sync)))
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_round_trips(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url, poolclass=NullPool)
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE app_orders (id int PRIMARY KEY)"))
    await engine.dispose()
    before = await reflect(empty_database_url)

    await run(empty_database_url, "upgrade", "head")
    first = await reflect(empty_database_url)
    await run(empty_database_url, "downgrade", "base")
    assert await reflect(empty_database_url) == before  # chancy's all gone, the app's kept
    await run(empty_database_url, "upgrade", "head")
    assert await reflect(empty_database_url) == first


async def test_current_revision_is_none_then_head(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        assert await migrations.current(engine) is None
        await migrations.upgrade(engine)
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()


async def test_concurrent_migrations_in_one_process_take_turns(
    empty_database_url: URL,
) -> None:
    engine = create_engine(empty_database_url, pool_size=4)
    try:
        await asyncio.gather(*(migrations.upgrade(engine) for _ in range(4)))
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()


async def test_concurrent_migrating_processes_wait_and_neither_fails(
    empty_database_url: URL,
) -> None:
    runs = await asyncio.gather(
        *(asyncio.to_thread(alembic_cli, empty_database_url, "upgrade", "head") for _ in range(3))
    )
    assert [done.returncode for done in runs] == [0, 0, 0], [done.stderr for done in runs]
    engine = create_engine(empty_database_url, poolclass=NullPool)
    try:
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()


def test_sql_mode_prints_the_ddl_without_a_database() -> None:
    ddl = migrations.sql()
    assert "CREATE TABLE chancy_jobs" in ddl
    assert "CREATE UNIQUE INDEX uq_chancy_jobs_unique_key" in ddl
    assert "chancy_alembic_version" in ddl


async def test_chancy_migrate_sql_returns_the_ddl_and_touches_nothing(
    empty_database_url: URL,
) -> None:
    async with Chancy(empty_database_url) as chancy:
        ddl = await chancy.migrate(sql=True)
        assert ddl is not None
        assert "CREATE TABLE chancy_jobs" in ddl
        assert await migrations.current(chancy.engine) is None


async def test_push_before_migrating_says_to_migrate(empty_database_url: URL) -> None:
    async with Chancy(empty_database_url) as chancy:
        with pytest.raises(SchemaError, match="chancy migrate"):
            await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
        await chancy.migrate()
        assert await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))


def alembic_cli(url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    dsn = url.render_as_string(hide_password=False)
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"dsn={dsn}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )


async def test_alembic_command_at_the_repo_root_builds_the_same_schema(
    database_url: URL, empty_database_url: URL
) -> None:
    done = await asyncio.to_thread(alembic_cli, empty_database_url, "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert await reflect(empty_database_url) == await reflect(database_url)
    done = await asyncio.to_thread(alembic_cli, empty_database_url, "check")
    assert done.returncode == 0, done.stderr
    done = await asyncio.to_thread(alembic_cli, empty_database_url, "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert await reflect(empty_database_url) == {}
