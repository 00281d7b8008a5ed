"""`chancy demo`: pushes, runs and measures demo jobs, and proves their priority order."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta

from rich.console import Console
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from chancy.app import Chancy
from chancy.cli import app
from chancy.demo import (
    DemoReport,
    OrderViolation,
    StartedJob,
    find_order_violation,
    report_table,
    run_demo,
)

runner = CliRunner()


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
