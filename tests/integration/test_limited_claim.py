"""The limited claim (paused, limited and keyed queues): never held up by an application's
open transaction, and no key's backlog starves the others."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.sql.compiler import SQLCompiler

from chancy.app import Chancy
from chancy.database import hot_connection
from chancy.executor import Job, QueuedJob
from chancy.queue import Queue
from chancy.repository import ClaimRepository
from chancy.repository.claim import _CLAIM_LIMITED, CLAIM_WINDOW
from tests.support import tasks

claims = ClaimRepository()


def greet(label: str) -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": label})


async def claim_limited(chancy: Chancy, queue: str, limit: int = 10) -> list[QueuedJob]:
    async with hot_connection(chancy.engine) as connection:
        return await claims.claim_available(connection, queue, limit, "worker-1", limited=True)


async def with_global_limit(chancy: Chancy) -> None:
    await chancy.declare(Queue(name="held", global_concurrency=5))


async def with_rate_limit(chancy: Chancy) -> None:
    await chancy.declare(Queue(name="held", rate_limit=100))


async def with_a_keyed_job(chancy: Chancy) -> None:
    await chancy.declare("held")
    await chancy.push("held", greet("keyed").with_concurrency_key("k", limit=5))


@pytest.mark.parametrize(
    "make_limited",
    [with_global_limit, with_rate_limit, with_a_keyed_job],
    ids=["global-concurrency", "rate-limit", "keyed"],
)
async def test_an_open_push_in_the_apps_transaction_never_blocks_the_limited_claim(
    database_url: URL, make_limited: Callable[[Chancy], Awaitable[None]]
) -> None:
    async with Chancy(database_url, lock_timeout=1.0) as chancy:
        await make_limited(chancy)
        ready = await chancy.push("held", greet("ready"))
        async with chancy.engine.connect() as application:
            # Its foreign-key check holds a key-share lock on the queue's row until commit.
            await chancy.push("held", greet("uncommitted"), session=application)
            claimed = await claim_limited(chancy, "held")
            await application.rollback()
    assert ready.id in [job.id for job in claimed]


async def test_an_open_push_in_the_apps_transaction_never_blocks_a_paused_queue(
    database_url: URL,
) -> None:
    async with Chancy(database_url, lock_timeout=1.0) as chancy:
        await chancy.declare("held")
        await chancy.push("held", greet("ready"))
        await chancy.pause_queue("held")
        async with chancy.engine.connect() as application:
            await chancy.push("held", greet("uncommitted"), session=application)
            claimed = await claim_limited(chancy, "held")
            await application.rollback()
    assert claimed == []


async def push_backlog(chancy: Chancy, queue: str, key: str, jobs: int) -> None:
    """``jobs`` ready jobs of concurrency key ``key`` (limit 1), pushed before the rest."""
    await chancy.push_many(queue, [greet(key).with_concurrency_key(key, limit=1)] * jobs)


async def test_a_key_with_room_starts_behind_5000_jobs_of_a_busy_key(chancy: Chancy) -> None:
    await chancy.declare("tenants")
    await push_backlog(chancy, "tenants", "busy", 5_000)
    (first,) = await claim_limited(chancy, "tenants")  # the busy key is full from now on
    other = await chancy.push("tenants", greet("idle").with_concurrency_key("idle", limit=1))
    claimed = await claim_limited(chancy, "tenants")
    assert first.concurrency_key == "busy"
    assert [job.id for job in claimed] == [other.id]


async def test_a_job_without_keys_starts_behind_5000_jobs_of_a_busy_key(chancy: Chancy) -> None:
    await chancy.declare("tenants")
    await push_backlog(chancy, "tenants", "busy", 5_000)
    await claim_limited(chancy, "tenants")
    plain = await chancy.push("tenants", greet("plain"))
    assert [job.id for job in await claim_limited(chancy, "tenants")] == [plain.id]


async def test_a_rate_key_with_room_starts_behind_5000_jobs_of_a_spent_one(
    chancy: Chancy,
) -> None:
    await chancy.declare("customers")
    spent = greet("spent").with_rate_key("spent", limit=1, period=3600)
    await chancy.push_many("customers", [spent] * 5_000)
    await claim_limited(chancy, "customers")
    other = await chancy.push("customers", greet("fresh").with_rate_key("fresh", limit=1))
    assert [job.id for job in await claim_limited(chancy, "customers")] == [other.id]


async def test_the_limited_claim_reads_per_key_not_the_blocked_backlog(chancy: Chancy) -> None:
    await chancy.declare("tenants")
    # One key with a backlog (one of its jobs running), 50 other keys with one job each.
    await insert_keyed(chancy, "'busy'", 1, 1)
    await insert_keyed(chancy, "'key-' || g", 1, 50)
    await insert_keyed(chancy, "'busy'", 2, 10_000)
    read_behind_10_000 = await rows_read_by_limited_claim(chancy, "tenants")
    await insert_keyed(chancy, "'busy'", 10_001, 100_000)
    read_behind_100_000 = await rows_read_by_limited_claim(chancy, "tenants")
    # The head (CLAIM_WINDOW jobs of the busy key, each checked), then a few rows per key.
    assert read_behind_100_000 < 5 * CLAIM_WINDOW
    assert read_behind_100_000 <= read_behind_10_000 * 1.1


async def insert_keyed(chancy: Chancy, key: str, first: int, last: int) -> None:
    """Jobs ``first`` to ``last`` of the queue ``tenants`` with the concurrency key
    ``key`` (SQL over ``g``, the number), limit 1; the first job of all is running."""
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO chancy_jobs (queue, func, state, concurrency_key, "
                "concurrency_limit) SELECT 'tenants', 'm.f', "
                f"CASE WHEN g = 1 AND {key} = 'busy' THEN 'running' ELSE 'pending' END, "
                f"{key}, 1 FROM generate_series({first}, {last}) g"
            )
        )


async def rows_read_by_limited_claim(chancy: Chancy, queue: str) -> float:
    plan = await explain_analyze_limited_claim(chancy, queue, limit=100)
    read: float = sum(
        float(node["Actual Rows"]) * node["Actual Loops"]
        for node in _walk(plan)
        if node.get("Relation Name") == "chancy_jobs"
    )
    return read


async def explain_analyze_limited_claim(chancy: Chancy, queue: str, limit: int) -> Any:
    """EXPLAIN ANALYZE of the limited claim statement as chancy sends it (rolled back)."""
    async with chancy.engine.connect() as connection:
        await connection.execute(sa.text("ANALYZE chancy_jobs"))
        raw = cast(asyncpg.Connection, (await connection.get_raw_connection()).driver_connection)
        construct = cast(sa.ClauseElement, _CLAIM_LIMITED.construct)
        compiled = cast(SQLCompiler, construct.compile(dialect=connection.dialect))
        values = {
            "p_queue": queue,
            "p_limit": limit,
            "p_window": max(CLAIM_WINDOW, limit),
            "p_worker_id": "w",
            "p_lease_seconds": 30.0,
        }
        params = compiled.construct_params(values)
        args = [params[name] for name in compiled.positiontup or ()]
        transaction = raw.transaction()
        await transaction.start()
        try:
            text = await raw.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled), *args)
        finally:
            await transaction.rollback()
    document = json.loads(text) if isinstance(text, str) else text
    return document[0]["Plan"]


def _walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", ()):
        yield from _walk(child)


async def test_a_stored_rate_period_past_the_limit_does_not_jam_the_queue(chancy: Chancy) -> None:
    # A row written before Job refused such periods: started, with a period of 1e12 s.
    await chancy.declare("customers")
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.text(
                "INSERT INTO chancy_jobs (queue, func, state, started_at, rate_key, "
                "rate_limit, rate_period) VALUES ('customers', 'm.f', 'running', now(), "
                "'old', 1, 1e12), ('customers', 'm.f', 'pending', NULL, 'old', 1, 1e12)"
            )
        )
    ready = await chancy.push("customers", greet("new").with_rate_key("new", limit=1))
    assert [job.id for job in await claim_limited(chancy, "customers")] == [ready.id]
