"""Real ``chancy worker`` processes on a test database, running the ledger app
(:mod:`tests.acceptance.ledger`), and the ledger table they write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL

from tests.acceptance import ledger
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

__all__ = ["Workers", "db", "wait_until", "workers"]

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """Starts `chancy worker` processes on one database and stops them all at the end."""

    def __init__(self, url: URL) -> None:
        self.dsn = url.render_as_string(hide_password=False)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, concurrency: int = 10) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "LEDGER_DSN": self.dsn,
            "LEDGER_CONCURRENCY": str(concurrency),
            "PYTHONPATH": str(ROOT),
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chancy",
                "worker",
                "--app",
                "tests.acceptance.ledger:chancy",
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()


@pytest.fixture
def workers(database_url: URL) -> Iterator[Workers]:
    started = Workers(database_url)
    yield started
    started.stop_all()


async def wait_until(db: asyncpg.Connection, query: str, expected: int, timeout: float) -> None:
    """Wait until ``query`` counts at least ``expected``."""

    async def reached() -> bool:
        return bool(await db.fetchval(query) >= expected)

    await until_async(reached, timeout=timeout, what=f"{query} >= {expected}")


@pytest.fixture
async def db(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, with the ledger table made."""
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.execute(ledger.CREATE_LEDGER)
    yield connection
    await connection.close()
