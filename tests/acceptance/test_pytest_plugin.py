"""The pytest plugin (chancy.testing.plugin): its fixtures in a test suite of their own."""

from __future__ import annotations

import importlib.metadata

import pytest
from sqlalchemy.engine import URL

from chancy.testing.databases import TEST_DSN_ENV, asyncpg_dsn

SUITE = """
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from chancy import Job
from chancy.app import Chancy
from chancy.sync import push
from chancy.testing import assert_pushed, drain, refute_pushed
from chancy.testing import sync as testing_sync
from plugin_tasks import double

SEEN = set()


@pytest.mark.parametrize("n", range(3))
async def test_async_chancy_is_open_and_alone(chancy, chancy_dsn, n):
    assert chancy_dsn not in SEEN
    SEEN.add(chancy_dsn)
    await refute_pushed(chancy)
    await chancy.push(Job.from_func(double, kwargs={"n": n}))
    result = await drain(chancy)
    assert result.succeeded == 1
    assert result.jobs[0].result == 2 * n


async def test_an_apps_own_configuration_uses_chancy_dsn(chancy_dsn):
    async with Chancy(chancy_dsn, allowed=["plugin_tasks.*"]) as app:
        await app.push(Job.from_func(double, kwargs={"n": 4}))
        (job,) = await assert_pushed(app, func=double, kwargs={"n": 4})
        assert (await drain(app)).jobs[0].result == 8


def test_sync_test_uses_the_sync_twins(chancy, chancy_dsn):
    engine = create_engine(chancy_dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    with Session(engine) as session, session.begin():
        push(session, Job.from_func(double, kwargs={"n": 5}))
    engine.dispose()
    assert testing_sync.drain(chancy).jobs[0].result == 10
"""


def _plugin_arguments() -> list[str]:
    """``-p chancy.testing.plugin`` unless chancy's installed metadata registers it
    (an editable install made before the entry point existed does not)."""
    registered = any(
        entry.value == "chancy.testing.plugin"
        for entry in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if registered else ["-p", "chancy.testing.plugin"]


def test_fixtures_give_each_test_its_own_migrated_database(
    pytester: pytest.Pytester, server_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        plugin_tasks="async def double(n: int) -> int:\n    return 2 * n\n",
        test_app=SUITE,
    )
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    monkeypatch.setenv(TEST_DSN_ENV, asyncpg_dsn(server_url))
    result = pytester.runpytest_subprocess(*_plugin_arguments(), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5)
