"""`chancy demo`: pushes, runs and measures demo jobs, and proves their priority order."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app
from chancy.demo import (
    DemoReport,
    OrderViolation,
    StartedJob,
    count_states,
    find_order_violation,
    report_table,
    run_demo,
)
from tests.support.waiting import until_async

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


async def test_the_demo_runs_every_job_in_priority_order(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        report = await run_demo(chancy, jobs=60, concurrency=5)
    assert report.ok
    assert report.states == {"succeeded": 60}
    assert report.priority_violation is None
    assert report.fifo_violation is None
    assert report.queue.startswith("demo-")
    assert report.claims >= 60 // 5
    assert report.throughput > 0
    assert 0 < report.drain_seconds <= report.wall_seconds + 1
    assert "***" not in report.database  # never a password, nor a masked one


async def test_two_demo_runs_use_queues_of_their_own(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        first = await run_demo(chancy, jobs=3, concurrency=1)
        second = await run_demo(chancy, jobs=4, concurrency=1)
    assert first.queue != second.queue
    assert (first.states, second.states) == ({"succeeded": 3}, {"succeeded": 4})


def test_the_order_proof_names_a_job_that_started_before_a_more_urgent_one() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    started = [
        StartedJob(1, 0, t0),
        StartedJob(2, 10, t0),  # same claim as job 1: not compared with it
        StartedJob(3, -10, t0 + timedelta(milliseconds=1)),
    ]
    violation = find_order_violation(started, lambda job: (job.priority,))
    assert violation is not None
    assert (violation.earlier.id, violation.later.id) == (2, 3)
    assert "job 2 (priority 10)" in str(violation)


def test_the_order_proof_accepts_claims_in_priority_then_id_order() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    later = t0 + timedelta(milliseconds=1)
    started = [StartedJob(5, -10, t0), StartedJob(2, 0, t0), StartedJob(4, 0, later)]
    assert find_order_violation(started, lambda job: (job.priority, job.id)) is None
    reversed_ids = [StartedJob(4, 0, t0), StartedJob(2, 0, later)]
    assert find_order_violation(reversed_ids, lambda job: (job.priority, job.id)) is not None


async def test_chancy_demo_prints_the_report_table(database_url: URL) -> None:
    dsn = database_url.render_as_string(hide_password=False)
    args = ["demo", "--jobs", "30", "--concurrency", "4", "--dsn", dsn]
    result = await asyncio.to_thread(runner.invoke, app, args)
    assert result.exit_code == 0, result.output
    for row in ("jobs succeeded", "30", "throughput", "priorities ran in order", "yes"):
        assert row in result.stdout
    if database_url.password:
        assert database_url.password not in result.output


def test_chancy_demo_help() -> None:
    result = runner.invoke(app, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    assert "--jobs" in result.output
    assert "--concurrency" in result.output


def test_the_report_table_prints_the_offending_pair() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    violation = OrderViolation(
        earlier=StartedJob(2, 10, t0), later=StartedJob(3, -10, t0 + timedelta(seconds=1))
    )
    report = DemoReport(
        database="app@db:5432/app",
        queue="demo-00",
        jobs=2,
        concurrency=1,
        states={"succeeded": 2},
        claims=2,
        wall_seconds=1.0,
        drain_seconds=0.5,
        priority_violation=violation,
        fifo_violation=None,
        first_job_id=2,
    )
    output = io.StringIO()
    Console(file=output, width=300).print(report_table(report))
    printed = output.getvalue()
    assert "priorities ran in order" in printed
    assert "no: job 2 (priority 10) started at 2025-01-01T00:00:00+00:00, before job 3" in printed
    assert "4 jobs/s" in printed
    assert not report.ok


async def test_a_demo_run_deletes_the_queues_of_earlier_runs(database_url: URL) -> None:
    async with Chancy(database_url) as chancy:
        first = await run_demo(chancy, jobs=3, concurrency=1)
        second = await run_demo(chancy, jobs=3, concurrency=1)
        demo_queues = [q.name for q in await chancy.list_queues() if q.name.startswith("demo-")]
        assert await chancy.get_job(first.first_job_id or 0) is None
        assert second.first_job_id is not None
        assert await chancy.get_job(second.first_job_id) is not None
    assert demo_queues == [second.queue]


def chancy_demo(dsn: str, *options: str) -> list[str]:
    """The command line of ``chancy demo`` in a process of its own."""
    return [sys.executable, "-m", "chancy", "demo", "--dsn", dsn, *options]


def no_terminal() -> dict[str, str]:
    """The environment of a process with no terminal settings (no COLUMNS)."""
    env = {name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")}
    return {**env, "PYTHONPATH": str(ROOT)}


def test_chancy_demo_without_a_terminal_fits_80_columns_and_wraps_no_cell(
    database_url: URL,
) -> None:
    dsn = database_url.render_as_string(hide_password=False)
    result = subprocess.run(
        chancy_demo(dsn, "--jobs", "40"),
        env=no_terminal(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    table = [line for line in lines if line.startswith(("│", "┃"))]
    assert table, result.stdout
    assert all(len(line) <= 80 for line in lines if not line.startswith("the jobs are kept"))
    labels = [line.split("│")[1].strip() for line in table if line.startswith("│")]
    assert "" not in labels  # a wrapped cell leaves its label empty on the next line
    assert "claims" not in labels


def test_chancy_demo_shows_push_progress_rate_and_eta(database_url: URL) -> None:
    dsn = database_url.render_as_string(hide_password=False)
    result = subprocess.run(
        chancy_demo(dsn, "--jobs", "40"),
        env=no_terminal(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"pushing .* 40/40", result.stdout), result.stdout
    assert re.search(r"running .* 40/40 .*jobs/s", result.stdout), result.stdout
    assert "left" in result.stdout  # the ETA column


async def test_chancy_demo_prints_its_summary_and_what_stays_pending_on_ctrl_c(
    database_url: URL,
) -> None:
    dsn = database_url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        *chancy_demo(dsn, "--jobs", "3000", "--concurrency", "1"),
        env=no_terminal(),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with Chancy(database_url) as chancy:

            async def some_succeeded() -> bool:
                demo = [q.name for q in await chancy.list_queues() if q.name.startswith("demo-")]
                return bool(demo) and bool((await count_states(chancy, demo[0])).get("succeeded"))

            await until_async(some_succeeded, timeout=60, what="the demo runs jobs")
        process.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode()
    assert process.returncode == 130, stderr.decode()
    assert "jobs succeeded" in output
    assert re.search(r"interrupted: \d+ jobs stay pending in queue demo-\w+", output), output
    assert "chancy queue delete demo-" in output
    assert "Traceback" not in stderr.decode()
