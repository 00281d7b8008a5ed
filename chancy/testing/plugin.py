"""The pytest plugin: fixtures ``chancy_dsn`` and ``chancy``, registered when chancy is
installed (entry point ``pytest11``).

- ``chancy_dsn``: the DSN of a fresh database at chancy's newest schema, for one test,
  dropped afterwards. It is a copy of a template migrated once per test process, made
  ahead of time in the background (:class:`~chancy.testing.databases.DatabasePool`), on
  the server ``CHANCY_TEST_DSN`` names (its maintenance database) or else a private
  embedded PostgreSQL started for the test run (see :mod:`chancy.testing.databases`). Use it with
  your app's own configuration: ``Chancy(chancy_dsn, queues=..., allowed=...)``.
- ``chancy``: a :class:`~chancy.Chancy` on ``chancy_dsn`` (no queues but ``default``).
  In an ``async def`` test (pytest-asyncio) it is open, on the test's event loop, and
  closed after the test; in a plain test it is not open (a Chancy's connections belong
  to an event loop): pass it to the helpers of :mod:`chancy.testing.sync`, which run on a
  loop of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.testing.databases import DatabasePool, asyncpg_dsn, test_server

__all__ = ["chancy", "chancy_databases", "chancy_dsn", "chancy_test_server"]


@pytest.fixture(scope="session")
def chancy_test_server() -> Iterator[URL]:
    """The test server's maintenance database (one per test process)."""
    with test_server() as url:
        yield url


@pytest.fixture(scope="session")
def chancy_databases(chancy_test_server: URL) -> Iterator[DatabasePool]:
    """Fresh migrated databases, made ahead of the tests (one pool per test process)."""
    pool = DatabasePool(chancy_test_server)
    yield pool
    pool.close()


@pytest.fixture
def chancy_dsn(chancy_databases: DatabasePool) -> Iterator[str]:
    """The DSN of a fresh database at chancy's newest schema, dropped after the test."""
    url = chancy_databases.take()
    yield asyncpg_dsn(url)
    chancy_databases.give_back(url)


@pytest.fixture
def chancy(request: pytest.FixtureRequest, chancy_dsn: str) -> Chancy:
    """A Chancy on ``chancy_dsn``: open in an ``async def`` test, not in a plain one."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        opened: Chancy = request.getfixturevalue("_chancy_open")
        return opened
    return Chancy(chancy_dsn)


async def _open_chancy(chancy_dsn: str) -> AsyncIterator[Chancy]:
    async with Chancy(chancy_dsn) as opened:
        yield opened


def _no_asyncio() -> Chancy:
    raise pytest.UsageError(
        "the chancy fixture in an async test needs pytest-asyncio: pip install pytest-asyncio"
    )


def _chancy_open_fixture() -> Any:
    """The fixture behind ``chancy`` in an async test: on pytest-asyncio, if installed."""
    try:
        import pytest_asyncio
    except ImportError:  # plain tests only: the async fixture is never asked for
        return pytest.fixture(_no_asyncio, name="_chancy_open")
    return pytest_asyncio.fixture(_open_chancy, name="_chancy_open")


_chancy_open = _chancy_open_fixture()
