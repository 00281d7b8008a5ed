"""Claiming jobs: priority order, no double claims, and a flat-cost plan."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.sql.compiler import SQLCompiler

from chancy.app import Chancy
from chancy.database import hot_connection
from chancy.executor import Job
from chancy.repository import AttemptRepository, ClaimRepository, Outcome
from chancy.repository.claim import _CLAIM
from chancy.states import JobState
from tests.support import tasks

claims = ClaimRepository()
attempts = AttemptRepository()


def greet(label: str) -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": label})


async def claim(chancy: Chancy, queue: str = "default", limit: int = 100) -> list[Any]:
    async with chancy.engine.begin() as connection:
        return await claims.claim_available(connection, queue, limit, "worker-1")


async def test_lower_priority_values_first_then_arrival_order(chancy: Chancy) -> None:
    priorities = [0, 10, -10, 5, 0, -10]
    for i, priority in enumerate(priorities):
        await chancy.push("default", greet(f"{priority}#{i}").with_priority(priority))
    claimed = await claim(chancy)
    assert [job.kwargs["name"] for job in claimed] == [
        "-10#2",
        "-10#5",
        "0#0",
        "0#4",
        "5#3",
        "10#1",
    ]


async def test_claim_takes_at_most_limit_in_order_across_calls(chancy: Chancy) -> None:
    await chancy.push_many("default", [greet(str(i)).with_priority(i % 3) for i in range(9)])
    first, second = await claim(chancy, limit=4), await claim(chancy, limit=100)
    order = [job.priority for job in first + second]
    assert order == sorted(order)
    assert (len(first), len(second)) == (4, 5)


async def test_claim_starts_an_attempt_with_a_lease(chancy: Chancy) -> None:
    ref = await chancy.push("default", greet("x"))
    (claimed,) = await claim(chancy)
    assert claimed.id == ref.id
    assert claimed.state is JobState.RUNNING
    assert claimed.attempts == 1
    assert claimed.worker_id == "worker-1"
    assert claimed.started_at is not None
    assert claimed.lease_expires_at > claimed.started_at
    assert await claim(chancy) == []


async def test_claim_takes_only_its_queue_and_only_ready_jobs(chancy: Chancy) -> None:
    await chancy.push("other", greet("other"))
    await chancy.push("default", greet("later").with_delay(3600))
    ready = await chancy.push("default", greet("now"))
    assert [job.id for job in await claim(chancy)] == [ready.id]


async def test_concurrent_claimers_never_take_the_same_job(database_url: URL) -> None:
    async with Chancy(database_url, engine_options={"pool_size": 8}) as chancy:
        await chancy.push_many("default", [greet(str(i)) for i in range(5_000)])
        claimed: list[list[int]] = [[] for _ in range(8)]

        async def claimer(n: int) -> None:
            while batch := await claim(chancy, limit=25):
                claimed[n].extend(job.id for job in batch)

        await asyncio.gather(*(claimer(n) for n in range(8)))
        every = [job_id for ids in claimed for job_id in ids]
        assert len(every) == 5_000
        assert len(set(every)) == 5_000
        assert sum(1 for ids in claimed if ids) > 1  # the claimers really ran side by side


async def test_claim_plan_walks_the_partial_index_without_sorting(chancy: Chancy) -> None:
    async with chancy.engine.begin() as connection:
        # 200,000 finished and 200,000 future jobs, the future ones at better priorities,
        # then 1,000 ready ones.
        await connection.execute(
            sa.text(
                "INSERT INTO chancy_jobs (queue, func, state, priority, completed_at) "
                "SELECT 'default', 'm.f', 'succeeded', -5, now() FROM generate_series(1, 200000)"
            )
        )
        await connection.execute(
            sa.text(
                "INSERT INTO chancy_jobs (queue, func, state, priority, scheduled_at) "
                "SELECT 'default', 'm.f', 'scheduled', -10, now() + interval '1 day' "
                "FROM generate_series(1, 200000)"
            )
        )
        await connection.execute(
            sa.text(
                "INSERT INTO chancy_jobs (queue, func, state, priority) "
                "SELECT 'default', 'm.f', 'pending', g % 7 FROM generate_series(1, 1000) g"
            )
        )
    plan = await explain_analyze_claim(chancy, "default", limit=10)
    nodes = list(_walk(plan))
    index_scans = [n for n in nodes if n.get("Index Name") == "ix_chancy_jobs_claim"]
    assert index_scans, [n["Node Type"] for n in nodes]
    assert not [n for n in nodes if "Sort" in n["Node Type"]]
    # The scan read exactly the 10 rows it returned: nothing finished or future on its way.
    assert index_scans[0]["Actual Rows"] == 10
    assert index_scans[0].get("Rows Removed by Filter", 0) == 0


async def explain_analyze_claim(chancy: Chancy, queue: str, limit: int) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the claim statement exactly as chancy sends it (rolled back)."""
    async with chancy.engine.connect() as connection:
        await connection.execute(sa.text("ANALYZE chancy_jobs"))
        construct = cast(sa.ClauseElement, _CLAIM.construct)
        compiled = cast(SQLCompiler, construct.compile(dialect=connection.dialect))
        values = {
            "p_queue": queue,
            "p_limit": limit,
            "p_worker_id": "w",
            "p_lease_seconds": 30.0,
            "p_synchronous_commit": "off",
        }
        params = compiled.construct_params(values)
        args = [params[name] for name in compiled.positiontup or ()]
        raw = cast(asyncpg.Connection, (await connection.get_raw_connection()).driver_connection)
        transaction = raw.transaction()
        await transaction.start()
        try:
            text = await raw.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), *args)
        finally:
            await transaction.rollback()
        document = json.loads(text) if isinstance(text, str) else text
        return document[0]["Plan"]  # type: ignore[no-any-return]


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


@pytest.mark.parametrize("limited", [False, True], ids=["plain", "limited"])
@pytest.mark.parametrize(("durable", "setting"), [(True, "on"), (False, "off")])
async def test_a_claim_commits_durably_only_when_asked(
    chancy: Chancy, limited: bool, durable: bool, setting: str
) -> None:
    """A claim waits for its commit to reach the disk only with ``durable``
    (``WorkerSettings(durable_claims=True)``); by default it does not: its fencing token
    is random, so a claim a crash loses never hands out the same token again. Either way
    the claim sets it for its own transaction, whatever it was (the test server runs
    with it off)."""
    await chancy.push("default", greet("a"))
    async with hot_connection(chancy.engine) as connection:
        assert isinstance(connection, asyncpg.Connection)
        async with connection.transaction():
            opposite = "off" if durable else "on"
            await connection.execute(f"SET LOCAL synchronous_commit = {opposite}")
            claimed = await claims.claim_available(
                connection, "default", 1, "worker-1", limited=limited, durable=durable
            )
            assert await connection.fetchval("SHOW synchronous_commit") == setting
    assert len(claimed) == 1


async def test_a_claim_lost_in_a_crash_is_claimed_again_under_a_new_fence(chancy: Chancy) -> None:
    """A claim undone (as a crash undoes an asynchronous commit) lets the job be claimed
    again with the same attempt number; the first claim's outcome is still refused."""
    ref = await chancy.push("default", greet("a"))
    (lost,) = await claim(chancy)
    async with chancy.engine.begin() as connection:  # the row as it was before the claim
        await connection.execute(
            sa.text(
                "UPDATE chancy_jobs SET state = 'pending', attempts = 0, fence = NULL, "
                "started_at = NULL, worker_id = NULL, lease_expires_at = NULL WHERE id = :id"
            ),
            {"id": ref.id},
        )
    (again,) = await claim(chancy)
    assert (lost.attempts, again.attempts) == (1, 1)
    assert lost.fence is not None
    assert again.fence is not None
    assert lost.fence != again.fence
    async with hot_connection(chancy.engine) as connection:
        stale = Outcome(lost.id, lost.fence, JobState.SUCCEEDED, result="stale")
        assert await attempts.complete_many_if_running(connection, [stale]) == set()
        fresh = Outcome(again.id, again.fence, JobState.SUCCEEDED, result="fresh")
        assert await attempts.complete_many_if_running(connection, [fresh]) == {again.id}


async def test_every_claim_draws_a_new_fence(chancy: Chancy) -> None:
    await chancy.push_many("default", [greet(str(i)) for i in range(50)])
    fences = [job.fence for job in await claim(chancy)]
    assert None not in fences
    assert len(set(fences)) == 50


async def test_outcomes_commit_durably(chancy: Chancy) -> None:
    """Outcomes never lower ``synchronous_commit`` either (asked for as above)."""
    await chancy.push("default", greet("a"))
    async with hot_connection(chancy.engine) as connection:
        assert isinstance(connection, asyncpg.Connection)
        async with connection.transaction():
            (job,) = await claims.claim_available(connection, "default", 1, "worker-1")
        async with connection.transaction():
            await connection.execute("SET LOCAL synchronous_commit = on")
            outcome = Outcome(job.id, job.fence, JobState.SUCCEEDED)
            assert await attempts.complete_many_if_running(connection, [outcome]) == {job.id}
            assert await connection.fetchval("SHOW synchronous_commit") == "on"
