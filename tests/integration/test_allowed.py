"""Workers run only the functions the app allows (``allowed=``), importing nothing else."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.queue import ExecutorName, Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import allowed_tasks, tasks
from tests.support.rows import insert_job_row

ALLOWED = ["tests.support.allowed_tasks.*", "tests.support.tasks:record"]
EXECUTORS = ["asyncio", "threads", "processes"]


@pytest.fixture(autouse=True)
def clean_recorders() -> None:
    tasks.calls.clear()
    allowed_tasks.imported.clear()


def queue(executor: ExecutorName = "asyncio") -> Queue:
    return Queue(name="default", concurrency=4, executor=executor, polling_interval=0.1)


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, queues=[queue()], allowed=ALLOWED) as chancy:
        yield chancy


@pytest.fixture(params=EXECUTORS)
async def app_on_each_executor(
    request: pytest.FixtureRequest, database_url: URL
) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, queues=[queue(request.param)], allowed=ALLOWED) as chancy:
        yield chancy


async def test_a_row_naming_os_system_fails_at_once_and_runs_nothing(
    app_on_each_executor: Chancy, tmp_path: Path
) -> None:
    app = app_on_each_executor
    witness = tmp_path / "ran"
    job_id = await insert_job_row(
        app.engine, func="os.system", kwargs={"command": f"touch {witness}"}, max_attempts=3
    )
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    (error,) = done.errors
    assert error["type"] == "FunctionNotAllowedError"
    assert "'os.system'" in error["message"]
    assert "allowed=" in error["message"]
    assert not witness.exists()


async def test_a_refused_function_s_module_is_never_imported(app: Chancy) -> None:
    job_id = await insert_job_row(app.engine, func="tests.support.never_imported.run")
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=10)
    assert done.state is JobState.FAILED
    assert done.errors[0]["type"] == "FunctionNotAllowedError"
    assert "tests.support.never_imported" not in sys.modules
    assert allowed_tasks.imported == []


async def test_functions_matching_a_pattern_run(app: Chancy) -> None:
    async with Worker(app):
        by_glob = await app.push(Job.from_func(allowed_tasks.hello, kwargs={"name": "glob"}))
        by_colon = await app.push(Job.from_func(tasks.record, kwargs={"label": "colon"}))
        done = [await app.wait_for_job(ref, timeout=10) for ref in (by_glob, by_colon)]
    assert [(job.state, job.result) for job in done] == [
        (JobState.SUCCEEDED, "hello glob"),
        (JobState.SUCCEEDED, "colon"),
    ]


async def test_a_function_outside_the_patterns_fails_even_when_pushed_with_from_func(
    app: Chancy,
) -> None:
    async with Worker(app):
        ref = await app.push(Job.from_func(tasks.greet, kwargs={"name": "x"}).with_max_attempts(3))
        done = await app.wait_for_job(ref, timeout=10)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert "'tests.support.tasks.greet'" in done.errors[0]["message"]


async def test_a_name_that_reaches_out_of_an_allowed_module_is_refused_by_each_executor(
    app_on_each_executor: Chancy,
) -> None:
    """``tests.support.allowed_tasks.os.getcwd`` matches ``tests.support.allowed_tasks.*`` but
    finds ``os.getcwd``: the check after the import refuses it, in a child process too."""
    app = app_on_each_executor
    job_id = await insert_job_row(
        app.engine, func="tests.support.allowed_tasks.os.getcwd", max_attempts=3
    )
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "FunctionNotAllowedError"
    assert "defined elsewhere" in done.errors[0]["message"]


async def test_the_worker_s_allowed_replaces_the_app_s(database_url: URL) -> None:
    async with Chancy(database_url, queues=[queue()]) as app:
        job_id = await insert_job_row(app.engine, func="tests.support.tasks.greet", kwargs={})
        async with Worker(app, allowed=["tests.support.allowed_tasks.*"]):
            done = await app.wait_for_job(job_id, timeout=10)
    assert done.errors[0]["type"] == "FunctionNotAllowedError"


async def test_a_worker_with_no_patterns_warns_once_that_it_runs_anything(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    async with Chancy(database_url, queues=[queue()]) as app, Worker(app):
        ref = await app.push(Job.from_func(tasks.record, kwargs={"label": "unrestricted"}))
        assert (await app.wait_for_job(ref, timeout=10)).state is JobState.SUCCEEDED
    warnings = [r for r in caplog.records if "runs any importable function" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "allowed=" in warnings[0].getMessage()
    assert "--allow" in warnings[0].getMessage()


async def test_a_restricted_worker_names_its_patterns_and_does_not_warn(
    app: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    async with Worker(app):
        pass
    messages = [record.getMessage() for record in caplog.records]
    assert not any("runs any importable function" in message for message in messages)
    assert any("runs only ['tests.support.allowed_tasks.*'" in message for message in messages)


async def test_a_row_naming_a_class_in_an_allowed_module_fails_at_once_and_starts_nothing(
    app_on_each_executor: Chancy, tmp_path: Path
) -> None:
    """``Spawner`` subclasses ``subprocess.Popen`` in an allowed module: its name matches the
    patterns and it is defined there, but it is a class, and a worker calls only functions."""
    app = app_on_each_executor
    witness = tmp_path / "spawned"
    job_id = await insert_job_row(
        app.engine,
        func="tests.support.allowed_tasks.Spawner",
        kwargs={"args": ["touch", str(witness)]},
        max_attempts=3,
    )
    async with Worker(app):
        done = await app.wait_for_job(job_id, timeout=30)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    (error,) = done.errors
    assert error["type"] == "CorruptJobError"
    assert "is a class, not a function" in error["message"]
    assert not witness.exists()


@pytest.mark.parametrize(
    "name",
    ["tests.support.allowed_tasks.Spawner.spawn", "tests.support.allowed_tasks.call"],
    ids=["class-method", "callable-instance"],
)
async def test_a_worker_with_no_patterns_still_calls_only_functions(
    database_url: URL, tmp_path: Path, name: str
) -> None:
    witness = tmp_path / "spawned"
    async with Chancy(database_url, queues=[queue()]) as app:
        job_id = await insert_job_row(
            app.engine, func=name, kwargs={"args": ["touch", str(witness)]}, max_attempts=3
        )
        async with Worker(app):
            done = await app.wait_for_job(job_id, timeout=10)
    assert (done.state, done.attempts) == (JobState.FAILED, 1)
    assert done.errors[0]["type"] == "CorruptJobError"
    assert "not a function" in done.errors[0]["message"]
    assert not witness.exists()
