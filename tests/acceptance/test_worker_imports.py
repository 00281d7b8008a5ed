"""A `chancy worker` that cannot import a job's module leaves the job, without using an
attempt, for a worker that can: a deployment problem never destroys a job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.states import JobState
from tests.support.rows import insert_job_row
from tests.support.waiting import until_async

ROOT = Path(__file__).resolve().parents[2]
MODULE = "h13_deployed_tasks"


def start_worker(database_url: URL, cwd: Path) -> subprocess.Popen[str]:
    dsn = database_url.render_as_string(hide_password=False)
    return subprocess.Popen(
        [sys.executable, "-m", "chancy", "worker", "--dsn", dsn, "-q", "default"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    """SIGTERM ``worker``; returns what it logged."""
    worker.send_signal(signal.SIGTERM)
    try:
        _out, err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        _out, err = worker.communicate()
    return err


@pytest.mark.slow
async def test_a_worker_that_cannot_import_a_job_leaves_it_for_one_that_can(
    database_url: URL, tmp_path: Path
) -> None:
    deployed, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    deployed.mkdir()
    elsewhere.mkdir()
    (deployed / f"{MODULE}.py").write_text("def hello(name):\n    return f'hello {name}'\n")
    async with Chancy(database_url) as app:
        ids = [
            await insert_job_row(app.engine, func=f"{MODULE}.hello", kwargs={"name": str(n)})
            for n in range(2)
        ]

        async def deferred() -> bool:
            jobs = [await app.get_job(job_id) for job_id in ids]
            return all(job is not None and job.state is JobState.SCHEDULED for job in jobs)

        lost = start_worker(database_url, elsewhere)
        try:
            await until_async(deferred, timeout=60, what="both jobs deferred")
        finally:
            logged = stop(lost)
        for job_id in ids:
            job = await app.get_job(job_id)
            assert job is not None
            assert (job.attempts, job.max_attempts) == (0, 1)  # no attempt used
            assert job.errors[-1]["type"] == "FunctionNotImportableError"
        errors = [line for line in logged.splitlines() if " ERROR " in line and MODULE in line]
        assert len(errors) == 1, logged  # once per function, not per job
        assert "--app" in errors[0]
        assert "start the worker" in errors[0]
        async with app.engine.begin() as connection:  # their time has come
            await connection.execute(sa.text("UPDATE chancy_jobs SET scheduled_at = now()"))
        found = start_worker(database_url, deployed)
        try:
            done = [await app.wait_for_job(job_id, timeout=60) for job_id in ids]
        finally:
            stop(found)
    assert {(job.state, job.attempts, job.max_attempts) for job in done} == {
        (JobState.SUCCEEDED, 1, 1)
    }
    assert {job.result for job in done} == {"hello 0", "hello 1"}
