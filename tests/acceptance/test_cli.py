"""The `chancy` command."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import URL
from typer.testing import CliRunner

from chancy import migrations
from chancy.cli import app
from chancy.database import create_engine

runner = CliRunner()


def test_migrate_sql_prints_the_ddl() -> None:
    result = runner.invoke(app, ["migrate", "--sql"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE chancy_jobs" in result.output


async def test_migrate_upgrades_the_database_named_by_dsn(empty_database_url: URL) -> None:
    dsn = empty_database_url.render_as_string(hide_password=False)
    result = await asyncio.to_thread(runner.invoke, app, ["migrate", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert migrations.head() in result.output
    engine = create_engine(empty_database_url)
    try:
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()
