"""No password of a DSN (or of ``connect_args``) ever shows: not in logs, errors, repr(),
the CLI's output or the demo's."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
from sqlalchemy.engine import URL
from typer.testing import CliRunner, Result

from chancy.app import Chancy
from chancy.cli import app as cli
from chancy.errors import DatabaseUnavailableError
from chancy.executor import Job
from chancy.queue import Queue
from chancy.worker import Worker
from tests.support import tasks

SECRET = "pw-Zq8!s3cr3t"  # trust authentication lets any password in
CONNECT_ARGS_SECRET = "ca-Xv4-s3cr3t"
UNREACHABLE = f"postgresql://app:{SECRET}@127.0.0.1:9/jobs"
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def with_password(url: URL) -> str:
    return url.set(password=SECRET).render_as_string(hide_password=False)


def shows_a_secret(text: str) -> bool:
    return SECRET in text or CONNECT_ARGS_SECRET in text or "s3cr3t" in text


async def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """The command in a thread: it calls asyncio.run, which needs a loop of its own."""
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)


def everything_printed(result: Result) -> str:
    error = "".join(traceback.format_exception(result.exception)) if result.exception else ""
    return result.output + error


async def test_logs_at_debug_never_show_a_password(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queues = [Queue(name="default", polling_interval=0.1)]
    app = Chancy(
        with_password(database_url),
        queues=queues,
        engine_options={"connect_args": {"password": CONNECT_ARGS_SECRET}},
    )
    reprs = [repr(app)]
    async with app:
        reprs.append(repr(app))
        await app.migrate()
        async with Worker(app) as worker:
            reprs.append(repr(worker))
            ok = await app.push(Job.from_func(tasks.greet, kwargs={"name": "x"}))
            bad = await app.push(Job.from_func(tasks.fail, kwargs={"message": "boom"}))
            await app.wait_for_job(ok, timeout=10)
            await app.wait_for_job(bad, timeout=10)
    logged = caplog.text + "".join(record.exc_text or "" for record in caplog.records)
    assert "boom" in logged  # the logs were captured at all
    assert not shows_a_secret(logged)
    assert not shows_a_secret(" ".join(reprs))


async def test_an_unreachable_server_s_error_shows_no_password() -> None:
    app = Chancy(UNREACHABLE, engine_options={"connect_args": {"password": CONNECT_ARGS_SECRET}})
    with pytest.raises(DatabaseUnavailableError) as caught:
        await app.open()
    await app.close()
    assert "app@127.0.0.1:9/jobs" in str(caught.value)
    assert not shows_a_secret("".join(traceback.format_exception(caught.value)))
    assert not shows_a_secret(repr(app))


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["push", "tests.support.tasks:greet", "--kwargs", '{"name": "x"}'],
        ["job", "show", "1"],
        ["worker"],
        ["queue", "list"],
    ],
)
async def test_commands_on_an_unreachable_server_show_no_password(command: list[str]) -> None:
    result = await invoke(*command, "--dsn", UNREACHABLE)
    assert result.exit_code != 0
    assert isinstance(result.exception, DatabaseUnavailableError)
    assert not shows_a_secret(everything_printed(result))


async def test_the_installed_command_prints_the_error_without_a_password() -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chancy", "-v", "migrate", "--dsn", UNREACHABLE],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: could not connect to PostgreSQL at app@127.0.0.1:9")
    assert not shows_a_secret(done.stdout + done.stderr)


async def test_commands_that_succeed_show_no_password(database_url: URL) -> None:
    dsn = with_password(database_url)
    outputs = [await invoke("-v", "migrate", "--dsn", dsn)]
    pushed = await invoke(
        "-v", "push", "tests.support.tasks:greet", "--kwargs", '{"name": "x"}', "--dsn", dsn
    )
    outputs.append(pushed)
    job_id = pushed.stdout.strip()
    outputs.append(await invoke("job", "show", job_id, "--dsn", dsn))
    outputs.append(await invoke("job", "show", job_id, "--json", "--dsn", dsn))
    outputs.append(await invoke("job", "cancel", job_id, "--dsn", dsn))
    outputs.append(await invoke("queue", "list", "--dsn", dsn))
    for result in outputs:
        assert result.exit_code == 0, result.output
        assert not shows_a_secret(everything_printed(result))


async def test_the_demo_shows_no_password(database_url: URL) -> None:
    result = await invoke("-v", "demo", "--jobs", "5", "--dsn", with_password(database_url))
    assert result.exit_code == 0, result.output
    assert f"{database_url.username}@" in result.output  # it names the server
    assert not shows_a_secret(everything_printed(result))


async def test_help_shows_no_password_from_the_environment() -> None:
    for command in (["--help"], ["worker", "--help"], ["migrate", "--help"], ["demo", "--help"]):
        result = await invoke(*command, env={"CHANCY_DSN": UNREACHABLE})
        assert result.exit_code == 0, result.output
        assert "CHANCY_DSN" in result.output or command == ["--help"]
        assert not shows_a_secret(result.output)
