"""Fixtures shared by every tier.

``server_url``: the session's PostgreSQL (see ``tests/support/servers.py``). ``template_database``:
a database migrated once per session; each test that asks for ``database_url`` gets its
own copy of it, dropped afterwards, so tests never see each other's rows.
``empty_database_url`` is a database with no schema at all, for migration tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.database import resolve_url
from chancy.queue import Queue
from chancy.testing.databases import migrated_template
from tests.support.servers import (
    create_database,
    drop_database,
    test_server,
    unique_database_name,
)

ROOT = Path(__file__).resolve().parent.parent
# pytester: tests/acceptance/test_pytest_plugin.py runs a suite of its own;
# tests.support.drained: the fixture of the chancy.testing tests (fresh_records).
pytest_plugins = ["pytester", "tests.support.drained"]


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    with test_server() as url:
        yield url


@pytest.fixture(scope="session")
def template_database(server_url: URL) -> Iterator[str]:
    name = asyncio.run(migrated_template(server_url))
    yield name
    asyncio.run(drop_database(server_url, name))


@pytest.fixture
async def database_url(server_url: URL, template_database: str) -> AsyncIterator[URL]:
    """A fresh database at chancy's newest schema, dropped after the test."""
    name = unique_database_name("chancy_test")
    url = await create_database(server_url, name, template=template_database)
    yield resolve_url(url)
    await drop_database(server_url, name)


@pytest.fixture
async def empty_database_url(server_url: URL) -> AsyncIterator[URL]:
    """A fresh database with no schema, dropped after the test."""
    name = unique_database_name("chancy_empty")
    url = await create_database(server_url, name)
    yield resolve_url(url)
    await drop_database(server_url, name)


TEST_QUEUES = ("default", "other", "emails", "bulk", "a", "b", "mail")


@pytest.fixture
async def chancy(database_url: URL) -> AsyncIterator[Chancy]:
    # The queues the tests push to, declared on the first push as an app's would be.
    queues = [Queue(name=name) for name in TEST_QUEUES]
    async with Chancy(database_url, queues=queues) as app:
        yield app
