"""Workers and pushers can run as a role that may only read and write rows (the grants of
``chancy grants``), while another role owns the schema."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app as cli
from chancy.errors import PermissionDeniedError
from chancy.executor import Job
from chancy.grants import grants_sql
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker, WorkerSettings
from tests.support import tasks
from tests.support.servers import asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]


async def execute(url: URL, sql: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
async def role(server_url: URL) -> AsyncIterator[tuple[str, str]]:
    """A new LOGIN role (name, password) with no privileges; dropped afterwards. Roles
    belong to the whole server, hence the random name."""
    name, password = f"chancy_dml_{secrets.token_hex(4)}", secrets.token_hex(8)
    await execute(server_url, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    yield name, password
    await execute(
        server_url,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'",
    )
    await execute(server_url, f"DROP ROLE {name}")


@pytest.fixture
async def dml_url(database_url: URL, role: tuple[str, str]) -> AsyncIterator[URL]:
    """The test's database, as ``role`` with the grants of ``chancy grants`` (applied by
    the owner of chancy's tables)."""
    name, password = role
    await execute(database_url, grants_sql(name))
    yield database_url.set(username=name, password=password)
    await execute(database_url, f"DROP OWNED BY {name}")  # its privileges, before DROP ROLE


async def test_a_dml_only_role_pushes_and_runs_jobs(dml_url: URL, role: tuple[str, str]) -> None:
    queues = [Queue(name="default", polling_interval=0.1)]
    async with Chancy(dml_url, queues=queues) as app:
        async with app.engine.connect() as connection:
            assert await connection.scalar(sa.text("SELECT current_user")) == role[0]
        async with Worker(app, settings=WorkerSettings(promote_interval=0.05)):
            now = await app.push(Job.from_func(tasks.greet, kwargs={"name": "role"}))
            later = await app.push(
                Job.from_func(tasks.record, kwargs={"label": "l"}).with_delay(0.2)
            )
            cancelled = await app.push(
                Job.from_func(tasks.record, kwargs={"label": "c"}).with_delay(60)
            )
            await app.cancel_job(cancelled)
            done = [await app.wait_for_job(ref, timeout=10) for ref in (now, later, cancelled)]
    assert [job.state for job in done] == [
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.CANCELLED,
    ]
    assert done[0].result == "Hello, role!"


async def test_a_dml_only_role_cannot_alter_chancys_tables(dml_url: URL) -> None:
    async with Chancy(dml_url) as app, app.engine.connect() as connection:
        with pytest.raises(DBAPIError) as caught:
            await connection.execute(sa.text("ALTER TABLE chancy_jobs ADD COLUMN x int"))
    assert caught.value.orig is not None
    assert getattr(caught.value.orig, "sqlstate", None) == "42501"  # insufficient_privilege
    assert "must be owner of table chancy_jobs" in str(caught.value.orig)


async def test_the_grants_cover_every_table_chancy_created(
    database_url: URL, dml_url: URL, role: tuple[str, str]
) -> None:
    async with Chancy(database_url) as app, app.engine.connect() as connection:
        rows = await connection.execute(
            sa.text(
                "SELECT table_name, has_table_privilege(:role, table_name, 'INSERT'), "
                "has_table_privilege(:role, table_name, 'SELECT') FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_name LIKE 'chancy%'"
            ),
            {"role": role[0]},
        )
        privileges = {name: (insert, select) for name, insert, select in rows}
    assert privileges.pop("chancy_alembic_version") == (False, True)
    assert privileges
    assert set(privileges.values()) == {(True, True)}


@pytest.fixture
async def dml_url_of_an_empty_database(empty_database_url: URL, role: tuple[str, str]) -> URL:
    # PostgreSQL 15 and newer do this by default; older ones let every role create tables.
    await execute(empty_database_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    name, password = role
    return empty_database_url.set(username=name, password=password)


async def test_migrate_as_a_dml_only_role_says_which_role_must_migrate(
    dml_url_of_an_empty_database: URL,
) -> None:
    async with Chancy(dml_url_of_an_empty_database) as app:
        with pytest.raises(PermissionDeniedError) as caught:
            await app.migrate()
    message = str(caught.value)
    assert "permission denied for schema public" in message
    assert "as the role that owns chancy's tables" in message
    assert "chancy grants --role" in message


async def test_chancy_migrate_as_a_dml_only_role_prints_the_error(
    dml_url_of_an_empty_database: URL,
) -> None:
    dsn = dml_url_of_an_empty_database.render_as_string(hide_password=False)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chancy", "migrate", "--dsn", dsn],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: migrating chancy's schema was refused by PostgreSQL")
    assert "as the role that owns chancy's tables" in done.stderr
    assert "Traceback" not in done.stderr
    assert dml_url_of_an_empty_database.password not in done.stderr + done.stdout  # type: ignore[operator]


def test_chancy_grants_prints_the_grants_of_the_role() -> None:
    result = CliRunner().invoke(cli, ["grants", "--role", "app_worker"])
    assert result.exit_code == 0, result.output
    assert result.output == grants_sql("app_worker")


async def test_a_worker_of_a_role_without_grants_is_told_which_grants_to_give(
    database_url: URL, role: tuple[str, str]
) -> None:
    name, password = role
    url = database_url.set(username=name, password=password)
    async with Chancy(url, queues=[Queue(name="default")]) as app:
        with pytest.raises(PermissionDeniedError, match="chancy grants --role") as caught:
            await Worker(app).start()
    assert "checking chancy's schema" in str(caught.value)
    assert password not in str(caught.value)
