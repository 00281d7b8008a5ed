"""`chancy worker --allow PATTERN`: a real worker process runs only what the patterns allow;
`--alias OLD=NEW`: it runs a renamed function for the jobs stored under its old name."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.states import JobState
from tests.support.rows import insert_job_row

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(database_url: URL) -> Iterator[subprocess.Popen[str]]:
    yield from worker_process(database_url, "--allow", "tests.support.allowed_tasks:*")


@pytest.fixture
def aliasing_worker(database_url: URL) -> Iterator[subprocess.Popen[str]]:
    yield from worker_process(
        database_url,
        "--allow",
        "tests.support.typed_tasks.renamed",
        "--alias",
        "tests.support.typed_tasks.old_name=tests.support.typed_tasks:renamed",
    )


def worker_process(database_url: URL, *options: str) -> Iterator[subprocess.Popen[str]]:
    """A `chancy worker` process on the queue default with ``options``, stopped after."""
    dsn = database_url.render_as_string(hide_password=False)
    command = ["worker", "--dsn", dsn, "-q", "default", *options]
    process = subprocess.Popen(
        [sys.executable, "-m", "chancy", "-v", *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.stderr is not None
    process.stderr.close()


async def test_a_worker_started_with_allow_runs_only_what_it_allows(
    database_url: URL, worker: subprocess.Popen[str]
) -> None:
    async with Chancy(database_url) as app:
        allowed = await insert_job_row(
            app.engine, func="tests.support.allowed_tasks.hello", kwargs={"name": "cli"}
        )
        refused = await insert_job_row(
            app.engine, func="tests.support.tasks.greet", kwargs={"name": "x"}, max_attempts=3
        )
        done = [await app.wait_for_job(job_id, timeout=60) for job_id in (allowed, refused)]
    assert (done[0].state, done[0].result) == (JobState.SUCCEEDED, "hello cli")
    assert (done[1].state, done[1].attempts) == (JobState.FAILED, 1)
    assert done[1].errors[0]["type"] == "FunctionNotAllowedError"
    worker.send_signal(signal.SIGTERM)
    _out, err = await asyncio.to_thread(worker.communicate, timeout=30)
    assert "runs only ['tests.support.allowed_tasks.*']" in err
    assert "runs any importable function" not in err


async def test_a_worker_started_with_alias_runs_the_new_function_for_the_old_name(
    database_url: URL, aliasing_worker: subprocess.Popen[str]
) -> None:
    async with Chancy(database_url) as app:
        job_id = await insert_job_row(
            app.engine,
            func="tests.support.typed_tasks.old_name",
            kwargs={"order": {"number": 9, "express": True}},
        )
        done = await app.wait_for_job(job_id, timeout=60)
    assert (done.state, done.result) == (JobState.SUCCEEDED, "renamed 9 express=True")
