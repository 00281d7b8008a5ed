"""The `chancy` command."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

from sqlalchemy.engine import URL
from typer.testing import CliRunner, Result

from chancy import migrations
from chancy.app import Chancy
from chancy.cli import JOB_FIELDS, app
from chancy.database import create_engine
from chancy.errors import UnknownQueueError
from chancy.executor import Job, QueuedJob
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import tasks
from tests.support.rows import insert_job_row

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def test_migrate_sql_prints_the_ddl() -> None:
    result = runner.invoke(app, ["migrate", "--sql"])
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE chancy_jobs" in result.output


async def test_migrate_upgrades_the_database_named_by_dsn(empty_database_url: URL) -> None:
    dsn = empty_database_url.render_as_string(hide_password=False)
    result = await asyncio.to_thread(runner.invoke, app, ["migrate", "--dsn", dsn])
    assert result.exit_code == 0, result.output
    assert migrations.head() in result.output
    engine = create_engine(empty_database_url)
    try:
        assert await migrations.current(engine) == migrations.head()
    finally:
        await engine.dispose()


def dsn_of(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def flat(output: str) -> str:
    """``output`` without the frame and line breaks of typer's error panel."""
    return " ".join(output.replace("│", " ").split())


async def invoke(*args: str) -> Result:
    """Run the command in a thread: it calls asyncio.run, which needs a loop of its own."""
    return await asyncio.to_thread(runner.invoke, app, list(args))


async def push_greeting(database_url: URL, *options: str) -> int:
    result = await invoke(
        "push", "tests.support.tasks:greet", "--dsn", dsn_of(database_url), "--declare", *options
    )
    assert result.exit_code == 0, result.output
    return int(result.stdout)


async def test_push_stores_the_job_that_job_show_json_returns(database_url: URL) -> None:
    job_id = await push_greeting(
        database_url, "--queue", "mail", "--kwargs", '{"name": "x"}', "--priority", "-5"
    )
    result = await invoke("job", "show", str(job_id), "--dsn", dsn_of(database_url), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == job_id
    assert shown["func"] == "tests.support.tasks.greet"
    assert shown["kwargs"] == {"name": "x"}
    assert (shown["queue"], shown["priority"], shown["state"]) == ("mail", -5, "pending")
    assert shown["created_at"].endswith("+00:00")


async def test_push_with_delay_max_attempts_and_unique_key(database_url: URL) -> None:
    options = ("--kwargs", '{"name": "x"}', "--delay", "60", "--unique-key", "k")
    first = await push_greeting(database_url, *options, "--max-attempts", "3")
    assert await push_greeting(database_url, *options) == first
    async with Chancy(database_url) as chancy:
        stored = await chancy.get_job(first)
    assert stored is not None
    assert (stored.state, stored.max_attempts, stored.unique_key) == ("scheduled", 3, "k")


async def test_push_with_kwargs_that_are_not_json_exits_2_naming_the_problem(
    database_url: URL,
) -> None:
    result = await invoke(
        "push", "tests.support.tasks:greet", "--dsn", dsn_of(database_url), "--kwargs", "{name: x}"
    )
    assert result.exit_code == 2
    assert "Invalid value for '--kwargs': '{name: x}' is not JSON" in flat(result.output)


async def test_push_with_kwargs_the_function_does_not_take_exits_2(database_url: URL) -> None:
    result = await invoke(
        "push",
        "tests.support.tasks:greet",
        "--dsn",
        dsn_of(database_url),
        "--kwargs",
        '{"nmae": 1}',
    )
    assert result.exit_code == 2
    assert "greet() has no parameter 'nmae'; did you mean 'name'?" in flat(result.output)


async def test_job_show_of_an_unknown_id_exits_1(database_url: URL) -> None:
    result = await invoke("job", "show", "424242", "--dsn", dsn_of(database_url))
    assert result.exit_code == 1
    assert "no job 424242" in result.output


async def test_job_cancel_then_retry_change_the_state(database_url: URL) -> None:
    job_id = await push_greeting(database_url, "--kwargs", '{"name": "x"}')
    cancelled = await invoke("job", "cancel", str(job_id), "--dsn", dsn_of(database_url))
    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {job_id} is now cancelled" in cancelled.stdout
    retried = await invoke("job", "retry", str(job_id), "--dsn", dsn_of(database_url))
    assert retried.exit_code == 0, retried.output
    assert f"job {job_id} is now pending" in retried.stdout


async def test_job_cancel_of_a_finished_job_says_why_nothing_changed(database_url: URL) -> None:
    job_id = await push_greeting(database_url, "--kwargs", '{"name": "x"}')
    await invoke("job", "cancel", str(job_id), "--dsn", dsn_of(database_url))
    again = await invoke("job", "cancel", str(job_id), "--dsn", dsn_of(database_url))
    assert again.exit_code == 1
    assert f"job {job_id} is cancelled; nothing changed" in flat(again.output)


async def test_job_retry_of_a_pending_job_exits_1(database_url: URL) -> None:
    job_id = await push_greeting(database_url, "--kwargs", '{"name": "x"}')
    result = await invoke("job", "retry", str(job_id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 1
    assert "only failed or cancelled jobs" in flat(result.output)


async def test_job_show_prints_each_error_with_its_traceback(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        ref = await chancy.push("default", Job.from_func(tasks.fail, kwargs={"message": "boom"}))
        async with Worker(chancy):
            await chancy.wait_for_job(ref, timeout=10)
    result = await invoke("job", "show", str(ref.id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert "failed" in result.stdout
    assert "attempt 1: ValueError" in result.stdout
    assert "Traceback (most recent call last)" in result.stdout
    assert "boom" in result.stdout


async def test_job_show_marks_a_deferral_as_not_an_attempt(database_url: URL) -> None:
    entry = {"attempt": 1, "type": "FunctionNotImportableError", "message": "m", "deferred": True}
    async with Chancy(database_url) as chancy:
        job_id = await insert_job_row(
            chancy.engine, func="no_such_module_h13.task", state="scheduled", errors=[entry]
        )
    result = await invoke("job", "show", str(job_id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert "deferred, not an attempt: FunctionNotImportableError" in result.stdout


async def test_job_retry_with_state_brings_back_every_cancelled_job_of_a_queue(
    database_url: URL,
) -> None:
    name = ("--kwargs", '{"name": "x"}')
    ids = [await push_greeting(database_url, "--queue", "mail", *name) for _ in range(3)]
    kept = await push_greeting(database_url, *name)
    for job_id in [*ids, kept]:
        await invoke("job", "cancel", str(job_id), "--dsn", dsn_of(database_url))
    dsn = dsn_of(database_url)
    result = await invoke("job", "retry", "--state", "cancelled", "-q", "mail", "--dsn", dsn)
    assert result.exit_code == 0, result.output
    assert "3 cancelled jobs are pending again" in result.stdout
    shown = await invoke("job", "show", str(kept), "--dsn", dsn, "--json")
    assert json.loads(shown.stdout)["state"] == "cancelled"


async def test_job_retry_needs_an_id_or_a_state(database_url: URL) -> None:
    result = await invoke("job", "retry", "--dsn", dsn_of(database_url))
    assert result.exit_code == 2
    assert "give a job id, or --state" in flat(result.output)


async def test_queue_pause_list_and_resume(database_url: URL) -> None:
    dsn = dsn_of(database_url)
    declared = await invoke("queue", "declare", "reports", "--dsn", dsn)
    assert declared.exit_code == 0, declared.output
    assert (await invoke("queue", "pause", "reports", "--dsn", dsn)).exit_code == 0
    listed = await invoke("queue", "list", "--dsn", dsn)
    rows = [line.split("│")[1:3] for line in listed.stdout.splitlines() if "│" in line]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["default", "no"],
        ["reports", "yes"],
    ]
    assert (await invoke("queue", "resume", "reports", "--dsn", dsn)).exit_code == 0
    async with Chancy(database_url) as chancy:
        (info,) = [q for q in await chancy.list_queues() if q.name == "reports"]
    assert not info.paused


async def test_queue_pause_of_an_unknown_queue_names_the_closest(database_url: URL) -> None:
    result = await invoke("queue", "pause", "defualt", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, UnknownQueueError)  # main() prints it, exit code 2
    assert "did you mean 'default'" in str(result.exception)


def test_job_show_lists_every_stored_field() -> None:
    stored = {field.name for field in dataclasses.fields(QueuedJob)} - {"delay"}
    assert set(JOB_FIELDS) == stored


LIMITED = Queue(name="limited", global_concurrency=3, rate_limit=10)


async def limits_of(database_url: URL, name: str) -> tuple[int | None, int | None]:
    async with Chancy(database_url) as chancy:
        (info,) = [q for q in await chancy.list_queues() if q.name == name]
    return info.global_concurrency, info.rate_limit


async def test_queue_declare_of_a_declared_queue_keeps_its_limits(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare(LIMITED)
    result = await invoke("queue", "declare", "limited", "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert await limits_of(database_url, "limited") == (3, 10)


async def test_a_worker_run_with_q_and_dsn_keeps_the_queues_limits(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare(LIMITED)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "chancy", "worker", "-q", "limited", "--concurrency", "2"),
            *("--dsn", dsn_of(database_url)),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            ref = await chancy.push("limited", Job.from_func(tasks.greet, kwargs={"name": "q"}))
            done = await chancy.wait_for_job(ref, timeout=60)  # the worker has started
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=30)
    assert done.state is JobState.SUCCEEDED
    assert await limits_of(database_url, "limited") == (3, 10)
