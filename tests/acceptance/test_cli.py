"""The `chancy` command."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL
from typer.testing import CliRunner, Result

import chancy.cli
from chancy import migrations
from chancy.app import Chancy
from chancy.cli import JOB_FIELDS, app, fold_runner_frames, hint_dsn, select_queues
from chancy.database import create_engine
from chancy.database.dsn import DSN_ENV
from chancy.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    InvalidQueueError,
    QueueNotEmptyError,
    SchemaError,
    UnknownQueueError,
)
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


CHANCY_DIR = os.path.join(os.path.dirname(os.path.abspath(chancy.cli.__file__)), "")
"""Where chancy's modules are (a checkout's root may be named chancy too)."""


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
    # Every field of a QueuedJob but those not stored: `delay` (stored as scheduled_at)
    # and `parent_results` (read from a workflow step's parents' rows).
    stored = {field.name for field in dataclasses.fields(QueuedJob)} - {"delay", "parent_results"}
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


async def test_a_worker_refuses_an_undeclared_queue_naming_the_closest(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare("emails")
    result = await invoke("worker", "-q", "emials", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, UnknownQueueError)  # main() prints it, exit code 2
    message = str(result.exception)
    assert "queue 'emials' is not declared; did you mean 'emails'?" in message
    assert "--declare" in message
    async with Chancy(database_url) as chancy:
        assert "emials" not in {info.name for info in await chancy.list_queues()}


async def test_queue_delete_removes_an_empty_queue(database_url: URL) -> None:
    dsn = dsn_of(database_url)
    assert (await invoke("queue", "declare", "reports", "--dsn", dsn)).exit_code == 0
    result = await invoke("queue", "delete", "reports", "--dsn", dsn)
    assert result.exit_code == 0, result.output
    assert "queue reports is deleted" in result.stdout
    async with Chancy(database_url) as chancy:
        assert "reports" not in {info.name for info in await chancy.list_queues()}


async def test_queue_delete_refuses_while_jobs_remain(database_url: URL) -> None:
    job_id = await push_greeting(database_url, "--queue", "mail", "--kwargs", '{"name": "x"}')
    result = await invoke("queue", "delete", "mail", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, QueueNotEmptyError)
    assert "queue 'mail' has 1 job (1 pending)" in str(result.exception)
    assert "--force" in str(result.exception)
    async with Chancy(database_url) as chancy:
        assert await chancy.get_job(job_id) is not None


async def test_queue_delete_hints_force_with_the_dsn_in_use(database_url: URL) -> None:
    await push_greeting(database_url, "--queue", "mail", "--kwargs", '{"name": "x"}')
    dsn = dsn_of(database_url)
    result = await invoke("queue", "delete", "mail", "--dsn", dsn)
    assert isinstance(result.exception, QueueNotEmptyError)
    message = str(result.exception)
    assert f"(`chancy queue delete mail --force --dsn {hint_dsn(dsn)}`)" in message
    assert "force=True" not in message


async def test_queue_delete_with_force_deletes_the_queues_jobs(database_url: URL) -> None:
    job_id = await push_greeting(database_url, "--queue", "mail", "--kwargs", '{"name": "x"}')
    result = await invoke("queue", "delete", "mail", "--force", "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert "queue mail is deleted, with its 1 job" in result.stdout
    async with Chancy(database_url) as chancy:
        assert await chancy.get_job(job_id) is None
        assert "mail" not in {info.name for info in await chancy.list_queues()}


async def test_queue_delete_with_force_refuses_while_a_job_runs(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        await chancy.declare("mail")
        ref = await chancy.push("mail", Job.from_func(tasks.greet, kwargs={"name": "x"}))
        async with chancy.engine.begin() as connection:
            await connection.execute(
                sa.text("UPDATE chancy_jobs SET state = 'running', attempts = 1 WHERE id = :id"),
                {"id": ref.id},
            )
    result = await invoke("queue", "delete", "mail", "--force", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, QueueNotEmptyError)
    assert "1 running" in str(result.exception)
    async with Chancy(database_url) as chancy:
        assert await chancy.get_job(ref) is not None


async def test_queue_delete_of_an_unknown_queue_names_the_closest(database_url: URL) -> None:
    result = await invoke("queue", "delete", "defualt", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, UnknownQueueError)
    assert "did you mean 'default'" in str(result.exception)


async def test_queue_delete_keeps_the_default_queue(database_url: URL) -> None:
    result = await invoke("queue", "delete", "default", "--force", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, InvalidQueueError)
    assert "'default' is always declared" in str(result.exception)


def test_a_worker_without_app_runs_the_default_queue_10_jobs_at_once() -> None:
    chancy = Chancy("postgresql://app@localhost/app")
    assert [(q.name, q.concurrency) for q in select_queues(chancy, [], None)] == [("default", 10)]
    named = select_queues(chancy, ["emails"], None)
    assert [(q.name, q.concurrency) for q in named] == [("emails", 10)]


def test_a_worker_keeps_the_concurrency_of_the_apps_queues() -> None:
    chancy = Chancy("postgresql://app@localhost/app", queues=[Queue(name="mail", concurrency=3)])
    chosen = select_queues(chancy, ["mail", "other"], None)
    assert [(q.name, q.concurrency) for q in chosen] == [("mail", 3), ("other", 10)]
    assert [q.concurrency for q in select_queues(chancy, ["mail"], 7)] == [7]


def test_worker_help_says_which_queues_run_and_how_many_jobs_at_once() -> None:
    result = runner.invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = flat(result.output)
    assert "default: all" not in text
    assert "Default: the app's queues with --app, else the queue default." in text
    assert "Default: the app's Queue(concurrency=) for its queues, else 10." in text


def test_worker_help_offers_durable_claims() -> None:
    result = runner.invoke(app, ["worker", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--durable-claims" in result.output
    assert "Wait for each claim's commit to reach the disk." in flat(result.output)


async def test_a_push_to_an_undeclared_queue_hints_the_commands_options(database_url: URL) -> None:
    result = await invoke(
        *("push", "tests.support.tasks:greet", "-q", "emials", "--kwargs", '{"name": "x"}'),
        *("--dsn", dsn_of(database_url)),
    )
    assert isinstance(result.exception, UnknownQueueError)
    message = str(result.exception)
    declare = f"`chancy queue declare emials --dsn {hint_dsn(dsn_of(database_url))}`"
    assert f"run {declare}, or push with --declare" in message
    assert "declare=True" not in message


async def test_an_unreachable_server_hints_dsn_option_and_never_the_password() -> None:
    dsn = "postgresql://app:s3cret@127.0.0.1:1/app"
    result = await invoke("job", "show", "1", "--dsn", dsn)
    assert isinstance(result.exception, DatabaseUnavailableError)
    message = str(result.exception)
    assert "the DSN (--dsn or CHANCY_DSN) is right" in message
    assert "s3cret" not in message


async def test_a_schema_error_hints_migrate_with_the_dsn_in_use(empty_database_url: URL) -> None:
    dsn = dsn_of(empty_database_url)
    result = await invoke("queue", "list", "--dsn", dsn)
    assert isinstance(result.exception, SchemaError)
    assert f"run `chancy migrate --dsn {hint_dsn(dsn)}`" in str(result.exception)
    assert "await chancy.migrate()" not in str(result.exception)


def test_a_dsn_in_a_hint_masks_every_password() -> None:
    dsn = "postgresql://app:pw1@db/app?sslpassword=pw2&sslmode=require"
    shown = hint_dsn(dsn) or ""
    assert "pw1" not in shown
    assert "pw2" not in shown
    assert "sslmode=require" in shown
    assert hint_dsn("postgresql://a@b@c/d") == "<your DSN>"
    assert hint_dsn(None) is None


async def test_chancy_demo_hints_job_show_with_the_dsn_in_use(database_url: URL) -> None:
    args = ["demo", "--jobs", "3", "--concurrency", "1", "--dsn", dsn_of(database_url)]
    result = await asyncio.to_thread(runner.invoke, app, args)
    assert result.exit_code == 0, result.output
    assert f"--dsn {hint_dsn(dsn_of(database_url))}" in flat(result.stdout)


async def test_job_show_starts_a_traceback_at_the_jobs_own_frames(database_url: URL) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        ref = await chancy.push("default", Job.from_func(tasks.fail, kwargs={"message": "boom"}))
        async with Worker(chancy):
            await chancy.wait_for_job(ref, timeout=10)
    result = await invoke("job", "show", str(ref.id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    frames = [line for line in result.stdout.splitlines() if 'File "' in line]
    assert "tests/support/tasks.py" in frames[0]
    assert not any("concurrent/futures" in frame or CHANCY_DIR in frame for frame in frames)
    assert "frames of chancy and Python's library folded (--json shows them)" in flat(result.stdout)


def test_a_traceback_section_without_a_frame_of_the_job_is_left_whole() -> None:
    runner_file = str(Path(chancy.cli.__file__).parent / "worker" / "worker.py")
    section = f"""Traceback (most recent call last):
  File "{runner_file}", line 1, in run
    call()
"""
    traceback = (
        f'{section}  File "/app/tasks.py", line 3, in f\n    raise ValueError\nValueError\n\n'
        "During handling of the above exception, another exception occurred:\n\n"
        f"{section}RuntimeError: y"
    )
    shown = fold_runner_frames(traceback).splitlines()
    assert shown[1] == "  ... 1 frame of chancy and Python's library folded (--json shows them)"
    assert shown[2] == '  File "/app/tasks.py", line 3, in f'
    assert shown[-3:] == [
        f'  File "{runner_file}", line 1, in run',
        "    call()",
        "RuntimeError: y",
    ]


def run_chancy(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """``python -m chancy ARGS`` in a process of its own (``main`` prints the errors), in
    a terminal ``columns`` wide."""
    return subprocess.run(
        [sys.executable, "-m", "chancy", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_app_that_raises_at_import_is_one_line_naming_the_module() -> None:
    result = run_chancy("queue", "list", "--app", "tests.support.raising_app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: cannot import 'tests.support.raising_app' for --app: RuntimeError: "
        "SMTP_HOST is not set (-v shows the traceback)"
    ]


def test_an_app_that_raises_at_import_shows_its_traceback_with_v() -> None:
    result = run_chancy("-v", "queue", "list", "--app", "tests.support.raising_app")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise RuntimeError("SMTP_HOST is not set")' in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: cannot import")


async def test_a_duplicate_unique_key_push_says_it_printed_the_existing_job(
    database_url: URL,
) -> None:
    options = ("--kwargs", '{"name": "x"}', "--unique-key", "k", "--dsn", dsn_of(database_url))
    first = await invoke("push", "tests.support.tasks:greet", *options)
    assert (first.exit_code, first.stderr) == (0, "")
    again = await invoke("push", "tests.support.tasks:greet", *options)
    assert again.exit_code == 0, again.output
    assert again.stdout.strip() == first.stdout.strip()
    assert again.stderr.strip() == (
        f"(existing job: job {first.stdout.strip()} holds unique key 'k'; nothing was pushed)"
    )


async def test_a_change_that_does_nothing_to_a_finished_job_reads_as_english(
    database_url: URL,
) -> None:
    async with Chancy(database_url, queues=[Queue(name="default")]) as chancy:
        ref = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
        async with Worker(chancy):
            await chancy.wait_for_job(ref, timeout=10)
    result = await invoke("job", "cancel", str(ref.id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 1
    assert f"job {ref.id} has succeeded; nothing changed" in flat(result.output)


async def test_migrate_sql_prints_nothing_to_apply_for_a_database_at_head(
    database_url: URL,
) -> None:
    result = await invoke("migrate", "--sql", "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert (
        f"-- chancy's schema is at {migrations.head()} already: nothing to apply" in result.stdout
    )
    assert "CREATE" not in result.stdout


async def test_migrate_sql_prints_only_what_the_database_lacks(empty_database_url: URL) -> None:
    engine = create_engine(empty_database_url)
    try:
        await migrations.upgrade(engine, "chancy_0003")
    finally:
        await engine.dispose()
    result = await invoke("migrate", "--sql", "--dsn", dsn_of(empty_database_url))
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE chancy_jobs" not in result.stdout
    assert "DROP INDEX ix_chancy_jobs_claim" in result.stdout  # chancy_0004's first step


async def test_migrate_sql_from_base_prints_the_whole_ddl(database_url: URL) -> None:
    result = await invoke("migrate", "--sql", "--from", "base", "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert "CREATE TABLE chancy_jobs" in result.stdout


def test_chancy_version_prints_the_installed_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"chancy {importlib.metadata.version('chancy')}"


def test_v_after_the_subcommand_shows_an_errors_traceback() -> None:
    result = run_chancy("queue", "list", "-v", "--app", "tests.support.raising_app")
    assert result.returncode == 2
    assert 'raise RuntimeError("SMTP_HOST is not set")' in result.stderr


def test_v_help_says_what_it_shows() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "your jobs' logs" in result.stdout


COMMANDS = [
    [],
    *[[name] for name in ("migrate", "grants", "worker", "push", "demo", "job", "queue")],
    *[["job", name] for name in ("show", "retry", "cancel")],
    *[["queue", name] for name in ("list", "declare", "pause", "resume", "delete")],
]


def test_help_shows_no_python_types() -> None:
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.stdout, (command, result.stdout)
        assert "<list[" not in result.stdout, (command, result.stdout)
        for placeholder in ("<str>", "<int", "<float>"):  # options and arguments name values
            assert placeholder not in result.stdout, (command, result.stdout)


def test_help_names_arguments_as_their_usage_does() -> None:
    show = runner.invoke(app, ["job", "show", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Usage: chancy job show [OPTIONS] ID\n" in show
    assert "  ID  The job's id." in show
    retry = runner.invoke(app, ["job", "retry", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Usage: chancy job retry [OPTIONS] [ID]\n" in retry
    assert "  [ID]  The job's id; or give --state to retry many." in retry
    pause = runner.invoke(app, ["queue", "pause", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Usage: chancy queue pause [OPTIONS] NAME\n" in pause


def test_help_texts_have_no_line_breaks_mid_sentence() -> None:
    listed = run_chancy("--help", columns=200).stdout  # CliRunner's help is 80 wide
    assert any(
        "Print the GRANTs" in line and "(no schema changes)" in line for line in listed.splitlines()
    )
    demo = run_chancy("demo", "--help", columns=200).stdout
    (line,) = [line for line in demo.splitlines() if "The jobs (mixed priorities)" in line]
    assert "stay there until the next run" in line  # the docstring breaks its line between


def test_a_dsn_in_a_hint_shows_its_password_as_three_stars() -> None:
    shown = hint_dsn("postgresql://app:pw1@db/app?sslpassword=pw2") or ""
    assert "app:***@db" in shown
    assert "sslpassword=***" in shown
    assert "%2A" not in shown


async def test_a_worker_on_an_undeclared_queue_hints_declare_with_the_dsn_in_use(
    database_url: URL,
) -> None:
    dsn = dsn_of(database_url)
    result = await invoke("worker", "-q", "defualt", "--dsn", dsn)
    assert isinstance(result.exception, UnknownQueueError)
    assert f"`chancy queue declare defualt --dsn {hint_dsn(dsn)}`" in str(result.exception)


def test_an_app_that_exits_at_import_says_so_in_one_line() -> None:
    result = run_chancy("queue", "list", "--app", "tests.support.exiting_app")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: cannot import 'tests.support.exiting_app' for --app: it exits when imported "
        "(SystemExit(3)); if it is a script, guard the script's entry point with "
        '`if __name__ == "__main__":` (-v shows the traceback)'
    ]


def test_pushing_a_function_whose_module_raises_at_import_is_one_line_naming_it() -> None:
    result = run_chancy("push", "tests.support.raising_app:task")
    assert result.returncode == 2
    message = " ".join(line.strip("│ ") for line in result.stderr.splitlines())
    assert "Traceback" not in result.stderr
    assert "cannot import 'tests.support.raising_app:task'" in message
    assert "RuntimeError: SMTP_HOST is not set" in message


def test_pushing_a_function_whose_module_exits_at_import_says_so() -> None:
    result = run_chancy("push", "tests.support.exiting_app:task")
    assert result.returncode == 2
    message = " ".join(" ".join(line.strip("│ ").split()) for line in result.stderr.splitlines())
    assert "exits when imported (SystemExit(3))" in message


PRINTING_APP = ("--app", "tests.support.printing_app")


async def test_what_an_app_prints_at_import_stays_out_of_the_commands_output(
    database_url: URL,
) -> None:
    job_id = await push_greeting(database_url, "--kwargs", '{"name": "x"}')
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chancy", "job", "show", str(job_id), "--json", *PRINTING_APP],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), DSN_ENV: dsn_of(database_url)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == job_id
    assert "loading settings" in result.stderr


async def test_migrate_sql_from_an_unknown_revision_names_the_closest_one(
    database_url: URL,
) -> None:
    result = await invoke("migrate", "--sql", "--from", "chancy_002", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, ConfigurationError)
    message = str(result.exception)
    assert "'chancy_002' is not a revision of chancy's schema; did you mean 'chancy_0002'?" in (
        message
    )


async def test_migrate_to_an_unknown_revision_names_the_closest_one(database_url: URL) -> None:
    result = await invoke("migrate", "--revision", "haed", "--dsn", dsn_of(database_url))
    assert isinstance(result.exception, ConfigurationError)
    assert "'haed' is not a revision of chancy's schema" in str(result.exception)


async def test_job_show_writes_a_stored_error_as_text_never_as_terminal_codes_or_markup(
    database_url: URL,
) -> None:
    error = {"attempt": 1, "type": "[/bold]", "message": "\x1b]0;owned\x07 \x1b[31mred\r"}
    async with Chancy(database_url) as chancy:
        job_id = await insert_job_row(chancy.engine, func="a.b", errors=[error, 7])
    result = await invoke("job", "show", str(job_id), "--dsn", dsn_of(database_url))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    assert "\r" not in result.stdout
    assert "\\x1b]0;owned\\x07 \\x1b[31mred\\r" in result.stdout
    assert "attempt 1: [/bold]" in result.stdout
    assert "an error that is not an object" in result.stdout
