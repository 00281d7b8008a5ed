"""Ctrl-C (SIGINT) sent to `chancy worker` once, twice, three times while a plain
function runs in a thread: the worker says what it waits for, a second signal exits at
once leaving the job to its lease, and no signal ever prints a raw traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job, QueuedJob
from chancy.jobs import Reference
from chancy.states import JobState
from tests.support import tasks
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
SLEEPY = "tests.support.tasks.sleep_sync"
SHORT = ("--shutdown-timeout", "0.2")


class WorkerProcess:
    """One `chancy worker` process on the test database, its log read line by line."""

    def __init__(self, database_url: URL) -> None:
        dsn = database_url.render_as_string(hide_password=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chancy", "worker", "--dsn", dsn, "-q", "default", *SHORT],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []

    async def line_with(self, text: str, timeout: float = 30) -> str:
        async def read() -> str:
            assert self.process.stderr is not None
            while line := await asyncio.to_thread(self.process.stderr.readline):
                self.lines.append(line)
                if text in line:
                    return line
            raise AssertionError(f"the worker exited without logging {text!r}: {self.log}")

        return await asyncio.wait_for(read(), timeout=timeout)

    async def exit_code(self, timeout: float = 30) -> int:
        assert self.process.stderr is not None
        rest = await asyncio.to_thread(self.process.stderr.read)
        self.lines.extend(rest.splitlines(keepends=True))
        return await asyncio.to_thread(self.process.wait, timeout)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def sigint(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    async with Chancy(database_url) as chancy:
        yield chancy


async def running_sleepy(
    app: Chancy, database_url: URL, seconds: float
) -> tuple[WorkerProcess, Reference]:
    ref = await app.push("default", Job.from_func(tasks.sleep_sync, kwargs={"seconds": seconds}))
    worker = WorkerProcess(database_url)

    async def running() -> bool:
        job = await app.get_job(ref)
        return job is not None and job.state is JobState.RUNNING

    await until_async(running, timeout=60, what="the job running")
    return worker, ref


async def stored(app: Chancy, ref: Reference) -> QueuedJob:
    job = await app.get_job(ref)
    assert job is not None
    return job


@pytest.mark.slow
async def test_one_sigint_says_which_job_it_waits_for_and_stops_once_it_ends(
    app: Chancy, database_url: URL
) -> None:
    worker, ref = await running_sleepy(app, database_url, 4)
    try:
        await worker.line_with("started on queues")
        worker.sigint()
        waiting = await worker.line_with("whose functions run in threads")
        assert f"job {ref.id} ({SLEEPY}, running" in waiting
        assert "a second Ctrl-C exits now" in waiting
        await worker.line_with("stopped")
        assert (await stored(app, ref)).state is JobState.SUCCEEDED  # "stopped" comes after
        assert await worker.exit_code() == 0
    finally:
        worker.end()
    assert "Traceback" not in worker.log
    job = await stored(app, ref)
    assert (job.attempts, job.max_attempts) == (1, 1)


@pytest.mark.slow
async def test_two_sigints_exit_leaving_the_job_in_a_thread_to_its_lease(
    app: Chancy, database_url: URL
) -> None:
    worker, ref = await running_sleepy(app, database_url, 60)
    try:
        await worker.line_with("started on queues")
        worker.sigint()
        await worker.line_with("whose functions run in threads")
        worker.sigint()
        exiting = await worker.line_with("exiting")
        assert f"job {ref.id} ({SLEEPY}, running" in exiting
        assert await worker.exit_code() == 1
    finally:
        worker.end()
    assert "Traceback" not in worker.log
    assert " stopped" not in worker.log  # it did not stop cleanly, and does not say so
    job = await stored(app, ref)
    assert (job.state, job.attempts, job.max_attempts) == (JobState.RUNNING, 1, 1)
    assert job.lease_expires_at is not None


@pytest.mark.slow
async def test_three_sigints_exit_without_a_traceback(app: Chancy, database_url: URL) -> None:
    worker, ref = await running_sleepy(app, database_url, 60)
    try:
        await worker.line_with("started on queues")
        # Signals sent at once reach the process as one (the kernel keeps one pending):
        # each is sent once the last was handled, as a user pressing Ctrl-C again would.
        worker.sigint()
        await worker.line_with("whose functions run in threads")
        worker.sigint()
        await worker.line_with("second signal received")
        worker.sigint()
        assert await worker.exit_code() == 1, worker.log
    finally:
        worker.end()
    assert "Traceback" not in worker.log
    assert "KeyboardInterrupt" not in worker.log
    assert (await stored(app, ref)).state is JobState.RUNNING  # never given back


@pytest.mark.slow
async def test_a_stopped_worker_does_not_wait_for_the_thread_of_a_timed_out_job(
    app: Chancy, database_url: URL
) -> None:
    job = Job.from_func(tasks.sleep_sync, kwargs={"seconds": 300}).with_timeout(0.5)
    ref = await app.push("default", job)
    worker = WorkerProcess(database_url)
    try:
        done = await app.wait_for_job(ref, timeout=60)
        assert done.state is JobState.FAILED  # its thread sleeps on, abandoned
        worker.sigint()
        await worker.line_with("stopped")
        assert await worker.exit_code(timeout=60) == 0
    finally:
        worker.end()
    assert "Traceback" not in worker.log
