"""A job whose function this worker cannot import (a deployment problem) is left for a
worker that can, without using an attempt, a bounded number of times; an error raised
by the function itself is an ordinary failure."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import QueuedJob
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support.rows import insert_job_row
from tests.support.waiting import until_async

WAIT = 20.0
DEFERRALS_MAX = 20  # the bound chancy documents (chancy.worker.outcomes.DEFERRALS_MAX)


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    queues = [Queue(name="default", concurrency=2, polling_interval=0.2)]
    async with Chancy(database_url, queues=queues) as chancy:
        yield chancy


@pytest.fixture
def broken_module(tmp_path: Path) -> Iterator[str]:
    """A module that exists but raises at import (a missing setting, say)."""
    (tmp_path / "h13_broken_at_import.py").write_text(
        "raise RuntimeError('SETTING is not set')\ndef task():\n    return 1\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield "h13_broken_at_import.task"
    sys.path.remove(str(tmp_path))


async def run_until_deferred(app: Chancy, func: str, **values: object) -> QueuedJob:
    job_id = await insert_job_row(app.engine, func=func, **values)

    async def deferred() -> bool:
        job = await app.get_job(job_id)
        return job is not None and job.state is JobState.SCHEDULED

    async with Worker(app):
        await until_async(deferred, timeout=WAIT, what=f"job {job_id} deferred")
    job = await app.get_job(job_id)
    assert job is not None
    return job


async def test_a_function_missing_from_its_module_is_deferred_without_using_an_attempt(
    app: Chancy,
) -> None:
    job = await run_until_deferred(app, "tests.support.tasks.no_such_function_h13")
    assert (job.attempts, job.max_attempts) == (0, 1)
    (entry,) = job.errors
    assert entry["type"] == "FunctionNotImportableError"
    assert entry["deferred"] is True


async def test_a_module_that_raises_at_import_is_deferred(app: Chancy, broken_module: str) -> None:
    job = await run_until_deferred(app, broken_module)
    assert job.attempts == 0
    assert "SETTING is not set" in job.errors[-1]["message"]


async def test_a_job_deferred_too_many_times_fails_saying_so(app: Chancy) -> None:
    entry = {"type": "FunctionNotImportableError", "message": "earlier", "deferred": True}
    job_id = await insert_job_row(
        app.engine, func="no_such_module_h13.task", errors=[entry] * DEFERRALS_MAX
    )
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=WAIT)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    last = done.errors[-1]
    assert last["type"] == "FunctionNotImportableError"
    assert f"{DEFERRALS_MAX} times" in last["message"]


async def test_an_import_error_raised_by_the_function_itself_is_an_ordinary_failure(
    app: Chancy,
) -> None:
    job_id = await insert_job_row(app.engine, func="tests.support.tasks.import_missing_h13")
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=WAIT)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[-1]["type"] == "ModuleNotFoundError"


@pytest.fixture(params=["sys.exit(3)", "raise KeyboardInterrupt", "raise SystemExit('usage: ...')"])
def exiting_module(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A module that exits at import: an unguarded ``sys.exit(main())`` at the bottom of
    a script, or an argument parser run at import."""
    name = f"h13_exits_at_import_{abs(hash(request.param))}"
    (tmp_path / f"{name}.py").write_text(
        f"import sys\n{request.param}\ndef task():\n    return 1\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield f"{name}.task"
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


@pytest.mark.parametrize("executor", ["asyncio", "threads"])
async def test_a_module_that_exits_at_import_is_deferred_and_the_worker_runs_on(
    database_url: URL, exiting_module: str, executor: Literal["asyncio", "threads"]
) -> None:
    queues = [Queue(name="default", concurrency=2, polling_interval=0.2, executor=executor)]
    async with Chancy(database_url, queues=queues) as chancy:
        exiting = await insert_job_row(chancy.engine, func=exiting_module)
        plain = await insert_job_row(
            chancy.engine, func="tests.support.tasks.greet", kwargs={"name": "x"}
        )

        async def deferred() -> bool:
            job = await chancy.get_job(exiting)
            return job is not None and job.state is JobState.SCHEDULED

        async with Worker(chancy):
            await until_async(deferred, timeout=WAIT, what=f"job {exiting} deferred")
            done = await chancy.wait_for_job(plain, timeout=WAIT)
        job = await chancy.get_job(exiting)
    assert done.state is JobState.SUCCEEDED
    assert job is not None
    assert job.attempts == 0
    (entry,) = job.errors
    assert (entry["type"], entry["deferred"]) == ("FunctionNotImportableError", True)
    assert "exit" in entry["message"]
