"""Workflows run by real worker processes: a fan-out of 100 steps and a fan-in, shared by
four `chancy worker` processes; the fan-in runs exactly once, after all of its parents."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.states import JobState
from chancy.workflow import Workflow, WorkflowStatus
from tests.acceptance import ledger
from tests.support.worker_processes import Workers, db, wait_until, workers

__all__ = ["db", "workers"]  # fixtures

FAN_OUT = 100


def record(n: int) -> Job:
    return Job.from_func(ledger.record, kwargs={"n": n})


def record_then_sleep() -> Job:
    """A branch that takes 0.2 s: 100 of them keep 4 workers of 10 slots busy together."""
    return Job.from_func(ledger.record_then_sleep, kwargs={"seconds": 0.2})


@pytest.mark.slow
async def test_four_workers_run_a_fan_out_and_its_fan_in_exactly_once(
    database_url: URL, workers: Workers, db: asyncpg.Connection
) -> None:
    workflow = Workflow("fan").step("start", record(0))
    branches = [f"branch-{i}" for i in range(FAN_OUT)]
    for name in branches:
        workflow = workflow.step(name, record_then_sleep(), after=["start"])
    workflow = workflow.step("join", record(-1), after=branches)
    for _ in range(4):
        workers.start()
    # Pushed once all four run (each has its row in chancy_workers), so that they share.
    await wait_until(db, "SELECT count(*) FROM chancy_workers", 4, timeout=60)
    async with Chancy(database_url) as chancy:
        ref = await chancy.push_workflow(workflow)
        done = await chancy.wait_for_workflow(ref, timeout=120)
    assert done.state is WorkflowStatus.SUCCEEDED
    runs = await db.fetch("SELECT job_id, count(*) AS n, min(at) AS at FROM ledger GROUP BY job_id")
    assert len(runs) == FAN_OUT + 2
    assert {row["n"] for row in runs} == {1}  # every step, the fan-in too, ran once
    ran_at = {row["job_id"]: row["at"] for row in runs}
    join = done.steps["join"]
    assert join.state is JobState.SUCCEEDED
    finished = [done.steps[name].completed_at for name in branches]
    assert all(at is not None for at in finished)
    assert ran_at[join.id] >= max(at for at in finished if at is not None)
    assert await db.fetchval("SELECT count(DISTINCT pid) FROM ledger") >= 2
