"""Cron across real worker processes: one job per tick, and a new leader when one dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL

from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
LEADER_TTL = 2.0


def start_worker(url: URL, *, app: bool = True) -> subprocess.Popen[bytes]:
    """A `chancy worker` of the cron app, or with ``app=False`` one given only `--dsn`."""
    dsn = url.render_as_string(hide_password=False)
    env = {**os.environ, "LEDGER_DSN": dsn, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "chancy", "worker", "--leader-ttl", str(LEADER_TTL)]
    command += ["--app", "tests.acceptance.cron_app:chancy"] if app else ["--dsn", dsn]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


@pytest.fixture
def processes(database_url: URL) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
async def db(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    yield connection
    await connection.close()


async def ticks(db: asyncpg.Connection) -> list[tuple[str, datetime]]:
    rows = await db.fetch(
        "SELECT unique_key, created_at FROM chancy_jobs WHERE unique_key LIKE 'cron:%' "
        "ORDER BY created_at"
    )
    return [(row["unique_key"], row["created_at"]) for row in rows]


@pytest.mark.slow
async def test_three_workers_push_each_tick_once_and_survive_the_leaders_death(
    database_url: URL, processes: list[subprocess.Popen[bytes]], db: asyncpg.Connection
) -> None:
    for _ in range(3):
        processes.append(start_worker(database_url))

    async def at_least(n: int) -> bool:
        return len(await ticks(db)) >= n

    await until_async(lambda: at_least(5), timeout=60, what="five ticks")
    leader_id = await db.fetchval("SELECT worker_id FROM chancy_leader")
    leader_pid = int(leader_id.split(":")[1])
    (leader,) = [p for p in processes if p.pid == leader_pid]
    leader.kill()  # SIGKILL: no resignation, the lease must run out
    before = len(await ticks(db))
    await until_async(lambda: at_least(before + 5), timeout=60, what="five ticks after the kill")
    new_leader = await db.fetchval("SELECT worker_id FROM chancy_leader")
    assert new_leader != leader_id
    keys = [key for key, _ in await ticks(db)]
    assert len(keys) == len(set(keys)), "a tick was pushed twice"
    # The first tick after the kill came within the lease's life plus a renewal period.
    after_kill = (await ticks(db))[before:]
    gap = (after_kill[0][1] - (await ticks(db))[before - 1][1]).total_seconds()
    assert gap < LEADER_TTL + LEADER_TTL / 3 + 2.0, f"no tick for {gap:.1f} s"


@pytest.mark.slow
async def test_a_worker_given_only_a_dsn_keeps_the_schedules_of_the_app(
    database_url: URL, processes: list[subprocess.Popen[bytes]], db: asyncpg.Connection
) -> None:
    # A worker with no app knows no schedules: it must not take that as "none".
    processes.append(start_worker(database_url))

    async def at_least(n: int) -> bool:
        return len(await ticks(db)) >= n

    await until_async(lambda: at_least(1), timeout=60, what="a tick of the app's worker")
    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(timeout=30) == 0
    before = len(await ticks(db))
    processes.append(start_worker(database_url, app=False))
    await until_async(lambda: at_least(before + 3), timeout=60, what="ticks of the other")
    assert await db.fetchval("SELECT count(*) FROM chancy_schedules") == 1
