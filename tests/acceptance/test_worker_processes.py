"""Real worker processes (`chancy worker`): exactly once while all is well, at least once
when a worker is killed."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.states import JobState
from tests.acceptance import ledger
from tests.support import tasks
from tests.support.waiting import until_async
from tests.support.worker_processes import Workers, db, wait_until, workers

__all__ = ["db", "workers"]  # fixtures


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
