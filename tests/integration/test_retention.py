"""Retention: the pruner deletes old finished jobs, and claims never wait on it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.executor import Job
from chancy.models import JobRow
from chancy.repository import ClaimRepository
from chancy.services.leader import Leadership
from chancy.services.pruner import Pruner
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "old"})


async def add_finished(chancy: Chancy, count: int, state: str, age: timedelta) -> None:
    """``count`` jobs that finished in ``state`` ``age`` ago (bulk, not through push)."""
    statement = sa.text(
        "INSERT INTO chancy_jobs (queue, func, state, attempts, started_at, completed_at) "
        "SELECT 'default', 'tests.support.tasks.greet', :state, 1, now() - CAST(:age AS interval), "
        "now() - CAST(:age AS interval) "
        "FROM generate_series(1, :count)"
    )
    async with chancy.engine.begin() as connection:
        await connection.execute(statement, {"state": state, "age": age, "count": count})


async def count_by_state(chancy: Chancy) -> dict[str, int]:
    async with chancy.engine.connect() as connection:
        statement = sa.select(JobRow.state, sa.func.count()).group_by(JobRow.state)
        return {str(state): int(n) for state, n in (await connection.execute(statement)).all()}


def pruner(chancy: Chancy, **options: object) -> Pruner:
    return Pruner(chancy.engine, Leadership(chancy.engine, "test"), **options)  # type: ignore[arg-type]


async def test_each_state_is_kept_for_its_retention(chancy: Chancy) -> None:
    await add_finished(chancy, 3, "succeeded", timedelta(days=2))
    await add_finished(chancy, 4, "succeeded", timedelta(hours=1))
    await add_finished(chancy, 5, "failed", timedelta(days=2))
    await add_finished(chancy, 6, "cancelled", timedelta(days=8))
    assert await pruner(chancy, batch=2).run_once() == 3 + 6
    assert await count_by_state(chancy) == {"succeeded": 4, "failed": 5}


async def test_unfinished_jobs_are_never_pruned(chancy: Chancy) -> None:
    await chancy.push("default", JOB)
    later = datetime.now(UTC) + timedelta(days=30)
    assert await pruner(chancy, clock=lambda: later).run_once() == 0
    assert await count_by_state(chancy) == {"pending": 1}


async def test_claims_do_not_wait_while_100_000_jobs_are_pruned(chancy: Chancy) -> None:
    await add_finished(chancy, 100_000, "succeeded", timedelta(days=2))
    refs = await chancy.push_many("default", [JOB] * 200)
    claims = ClaimRepository()
    big = pruner(chancy, batch=100_000)  # one long DELETE: the worst case for a claimer
    pruning = asyncio.create_task(big.run_once())
    claim_seconds = []
    claimed = 0
    while not pruning.done() or claimed < len(refs):
        started = time.perf_counter()
        async with chancy.engine.begin() as connection:
            claimed += len(await claims.claim_available(connection, "default", 5, "claimer"))
        claim_seconds.append(time.perf_counter() - started)
        if claimed >= len(refs):
            break
    assert await pruning == 100_000
    assert claimed == len(refs)
    assert max(claim_seconds) < 0.25, f"a claim waited {max(claim_seconds):.2f} s"
    assert (await count_by_state(chancy)).get("succeeded", 0) == 0
