"""Ceilings: the same database work done with plain asyncpg, as fast as it goes.

Each ceiling runs on one asyncpg connection with prepared statements and no library in
between, in the scenario's own database, so a scenario's ratio (chancy / ceiling) says
how much of what the server can do chancy delivers.

- :func:`single_inserts`: one single-row INSERT per autocommit transaction into a plain
  table (``id`` identity primary key, ``payload`` jsonb), returning the id as
  :meth:`~chancy.Chancy.push` does.
- :func:`batched_inserts`: multi-row INSERTs (``unnest`` of one array parameter), each
  committed.
- :func:`claim_and_complete`: chancy's claim done by hand on ``chancy_jobs``: one
  autocommit UPDATE claiming a batch through the same partial index as chancy's claim
  (``ix_chancy_jobs_claim``: ``queue, priority, id WHERE state = 'pending'`` and no
  keys), then one
  completing it, until the queue is empty. It writes less than chancy does per job (no
  ``worker_id``, lease, result or notification): it is the floor of the work, not a rival
  implementation.
"""

from __future__ import annotations

import json
import time

import asyncpg

__all__ = [
    "CLAIM_SQL",
    "COMPLETE_SQL",
    "PLAIN_PAYLOAD",
    "PLAIN_TABLE",
    "batched_inserts",
    "claim_and_complete",
    "count_plain_rows",
    "create_plain_table",
    "single_inserts",
]

PLAIN_TABLE = "bench_plain"
PLAIN_PAYLOAD = json.dumps({"func": "benchmarks.tasks.noop", "kwargs": {}})
WARM_UP_STATEMENTS = 20

# The literal 'pending' (not a parameter) and the keys' IS NULL let PostgreSQL match the
# partial claim index.
CLAIM_SQL = """
UPDATE chancy_jobs
   SET state = 'running', attempts = attempts + 1, started_at = now()
 WHERE id IN (
        SELECT id FROM chancy_jobs
         WHERE queue = $1 AND state = 'pending'
           AND concurrency_key IS NULL AND rate_key IS NULL
         ORDER BY priority, id
         LIMIT $2
           FOR UPDATE SKIP LOCKED)
RETURNING id, attempts
"""
COMPLETE_SQL = """
UPDATE chancy_jobs SET state = 'succeeded', completed_at = now() WHERE id = ANY($1::bigint[])
"""


async def create_plain_table(connection: asyncpg.Connection) -> None:
    """Create the ceiling's plain table (empty)."""
    await connection.execute(
        f"""
        CREATE TABLE {PLAIN_TABLE} (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            payload jsonb NOT NULL
        )
        """
    )


async def count_plain_rows(connection: asyncpg.Connection) -> int:
    """How many rows the plain table holds."""
    return int(await connection.fetchval(f"SELECT count(*) FROM {PLAIN_TABLE}"))


async def single_inserts(connection: asyncpg.Connection, count: int) -> float:
    """Insert ``count`` rows one per autocommit transaction; returns seconds taken.

    A few statements are run (and deleted) first, as chancy's side gets a warm-up too."""
    statement = await connection.prepare(
        f"INSERT INTO {PLAIN_TABLE} (payload) VALUES ($1::jsonb) RETURNING id"
    )
    for _ in range(WARM_UP_STATEMENTS):
        await statement.fetchval(PLAIN_PAYLOAD)
    await connection.execute(f"DELETE FROM {PLAIN_TABLE}")
    started = time.perf_counter()
    for _ in range(count):
        await statement.fetchval(PLAIN_PAYLOAD)
    return time.perf_counter() - started


async def batched_inserts(connection: asyncpg.Connection, count: int, batch: int) -> float:
    """Insert ``count`` rows as INSERTs of ``batch`` rows, each its own autocommit
    transaction; returns seconds taken."""
    statement = await connection.prepare(
        f"INSERT INTO {PLAIN_TABLE} (payload) SELECT unnest($1::text[])::jsonb"
    )
    await statement.fetch([PLAIN_PAYLOAD])  # prepare and warm up
    await connection.execute(f"DELETE FROM {PLAIN_TABLE}")
    started = time.perf_counter()
    for first in range(0, count, batch):
        size = min(batch, count - first)
        await statement.fetch([PLAIN_PAYLOAD] * size)
    return time.perf_counter() - started


async def claim_and_complete(connection: asyncpg.Connection, queue: str, batch: int) -> int:
    """Drain ``queue``: claim ``batch`` jobs in one transaction, complete them in
    another, until none is left. Returns how many jobs were processed."""
    claim = await connection.prepare(CLAIM_SQL)
    complete = await connection.prepare(COMPLETE_SQL)
    processed = 0
    while True:
        rows = await claim.fetch(queue, batch)
        if not rows:
            return processed
        await complete.fetch([row["id"] for row in rows])
        processed += len(rows)
