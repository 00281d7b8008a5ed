"""A real role with a real password: a ``chancy worker`` process on its DSN, whose
connections are cut under it, never writes the password to its log.

(``tests/integration/test_secrets.py`` covers the library, the CLI's commands and an
unreachable server with a DSN whose password the server does not check; here the role
exists, so on a server that checks passwords the password is the one that works.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from tests.support import tasks
from tests.support.servers import asyncpg_dsn

ROOT = Path(__file__).resolve().parents[2]
SECRET = f"S3cr3t-{secrets.token_hex(6)}"
WAIT = 30.0


@pytest.fixture
async def admin(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    yield connection
    await connection.close()


@pytest.fixture
async def role_url(database_url: URL, admin: asyncpg.Connection) -> AsyncIterator[URL]:
    """The test database's URL as a role of its own, logging in with :data:`SECRET`."""
    role = f"chancy_secret_{secrets.token_hex(4)}"
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
    await admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
    await admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    yield database_url.set(username=role, password=SECRET)
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role
    )
    await admin.execute(f"DROP OWNED BY {role}")
    await admin.execute(f"DROP ROLE {role}")


async def cut_connections(admin: asyncpg.Connection, role: str) -> int:
    """Terminate every backend of ``role``; returns how many there were."""
    return int(
        await admin.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = $1",
            role,
        )
    )


def start_worker(dsn: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """``chancy -v worker --dsn DSN``, its output (and log) going to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "chancy", "-v", "worker", "--dsn", dsn, "--lease-seconds", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def run_job(chancy: Chancy, name: str) -> None:
    reference = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": name}))
    assert (await chancy.wait_for_job(reference, timeout=WAIT)).result == f"Hello, {name}!"


@pytest.mark.slow
async def test_a_worker_whose_connections_are_cut_never_logs_its_password(
    role_url: URL, admin: asyncpg.Connection, tmp_path: Path
) -> None:
    dsn = role_url.render_as_string(hide_password=False)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = start_worker(dsn, log)
        try:
            async with Chancy(dsn) as chancy:
                await run_job(chancy, "before")
            cut = await cut_connections(admin, str(role_url.username))
            async with Chancy(dsn) as chancy:
                await run_job(chancy, "after")
        finally:
            worker.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(worker.wait, WAIT)
    logged = log_path.read_text(errors="replace")
    assert cut >= 1, logged  # the worker's connections
    assert returncode == 0, logged
    assert "started on queues" in logged  # the log was written at all
    assert SECRET not in logged


@pytest.mark.slow
async def test_a_worker_that_cannot_reach_its_server_never_prints_its_password(
    role_url: URL, tmp_path: Path
) -> None:
    unreachable = role_url.set(host="127.0.0.1", port=9, query={})
    done = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "chancy",
            "-v",
            "worker",
            "--dsn",
            unreachable.render_as_string(hide_password=False),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    printed = done.stdout + done.stderr
    assert done.returncode != 0, printed
    assert f"{role_url.username}@127.0.0.1:9" in printed, printed
    assert SECRET not in printed


async def test_the_role_with_a_password_pushes_and_reads_jobs_and_repr_hides_it(
    role_url: URL,
) -> None:
    async with Chancy(role_url) as chancy:
        reference = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
        assert (await chancy.get_job(reference)) is not None
        assert SECRET not in repr(chancy)
