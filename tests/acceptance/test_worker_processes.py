"""Real worker processes (`chancy worker`): exactly once while all is well, at least once
when a worker is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.states import JobState
from tests.acceptance import ledger
from tests.support import tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

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


@pytest.fixture
async def db(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.execute(ledger.CREATE_LEDGER)
    yield connection
    await connection.close()


async def wait_until(db: asyncpg.Connection, query: str, expected: int, timeout: float) -> None:
    async def reached() -> bool:
        return bool(await db.fetchval(query) >= expected)

    await until_async(reached, timeout=timeout, what=f"{query} >= {expected}")


@pytest.mark.slow
async def test_four_workers_run_five_thousand_jobs_exactly_once(
    database_url: URL, workers: Workers, db: asyncpg.Connection
) -> None:
    async with Chancy(database_url) as chancy:
        refs = await chancy.push_many(
            "default", [Job.from_func(ledger.record, kwargs={"n": i}) for i in range(5_000)]
        )
    for _ in range(4):
        workers.start()
    await wait_until(
        db, "SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'", 5_000, timeout=120
    )
    runs = await db.fetch("SELECT job_id, count(*) AS n FROM ledger GROUP BY job_id")
    assert len(runs) == 5_000
    assert {row["n"] for row in runs} == {1}
    assert {row["job_id"] for row in runs} == {ref.id for ref in refs}
    pids = await db.fetchval("SELECT count(DISTINCT pid) FROM ledger")
    assert pids >= 2  # the work was really shared


@pytest.mark.slow
async def test_jobs_of_a_killed_worker_are_finished_by_another(
    database_url: URL, workers: Workers, db: asyncpg.Connection
) -> None:
    async with Chancy(database_url) as chancy:
        job = Job.from_func(ledger.record_then_sleep, kwargs={"seconds": 2.0})
        refs = await chancy.push_many("default", [job.with_max_attempts(3)] * 20)
    doomed = workers.start("--lease-seconds", "2", concurrency=20)
    await wait_until(db, "SELECT count(*) FROM ledger", 20, timeout=60)
    doomed.kill()  # SIGKILL: no goodbye, the 20 runs are abandoned mid-job
    doomed.wait()
    workers.start("--lease-seconds", "2", "--rescue-interval", "0.5", concurrency=20)
    async with Chancy(database_url) as chancy:
        done = [await chancy.wait_for_job(ref, timeout=90) for ref in refs]
    assert {job.state for job in done} == {JobState.SUCCEEDED}
    assert {job.attempts for job in done} == {2}
    for job in done:
        (lost,) = job.errors
        assert (lost["type"], lost["attempt"]) == ("LeaseExpired", 1)
    runs = await db.fetch("SELECT job_id, attempt, pid FROM ledger ORDER BY job_id, attempt")
    assert len(runs) == 40  # each job: the killed attempt, then the one that finished
    assert {row["pid"] for row in runs if row["attempt"] == 1} == {doomed.pid}


@pytest.mark.slow
async def test_sigterm_gives_running_jobs_back_at_once_and_exits_cleanly(
    database_url: URL, workers: Workers, db: asyncpg.Connection
) -> None:
    async with Chancy(database_url) as chancy:
        job = Job.from_func(ledger.record_then_sleep, kwargs={"seconds": 60.0})
        refs = await chancy.push_many("default", [job] * 5)
    worker = workers.start("--shutdown-timeout", "0.5")
    await wait_until(db, "SELECT count(*) FROM ledger", 5, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    async with Chancy(database_url) as chancy:
        back = [await chancy.get_job(ref) for ref in refs]
    assert {(job.state, job.attempts, job.lease_expires_at) for job in back} == {  # type: ignore[union-attr]
        (JobState.PENDING, 1, None)
    }


async def stderr_line(process: subprocess.Popen[bytes], text: str, timeout: float) -> str:
    """The first line of ``process``'s stderr holding ``text``; fails after ``timeout``."""

    async def read() -> str:
        assert process.stderr is not None
        while line := await asyncio.to_thread(process.stderr.readline):
            if text in line.decode(errors="replace"):
                return line.decode(errors="replace")
        raise AssertionError(f"the worker exited without logging {text!r}")

    return await asyncio.wait_for(read(), timeout=timeout)


@pytest.mark.slow
async def test_sigterm_waits_for_a_job_in_a_thread_and_a_second_exits_without_giving_it_back(
    database_url: URL, workers: Workers
) -> None:
    async with Chancy(database_url) as chancy:
        ref = await chancy.push("default", Job.from_func(tasks.sleep_sync, kwargs={"seconds": 60}))

        async def running() -> bool:
            job = await chancy.get_job(ref)
            return job is not None and job.state is JobState.RUNNING

        worker = workers.start("--shutdown-timeout", "0.2")
        await until_async(running, timeout=60, what="the job running")
        worker.send_signal(signal.SIGTERM)
        await stderr_line(worker, "whose functions run in threads", timeout=30)
        assert worker.poll() is None  # the first signal waits for the thread
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 1
        held = await chancy.get_job(ref)
    assert held is not None
    assert (held.state, held.attempts) == (JobState.RUNNING, 1)  # never given back
    assert held.lease_expires_at is not None  # another worker takes it once it expires
