"""Jobs that write a ledger row per run, and the app the worker processes import.

Run as ``chancy worker --app tests.acceptance.ledger:chancy`` with ``LEDGER_DSN`` set:
each run of :func:`record` inserts (job id, attempt, worker pid) into ``ledger``, so a
test can count exactly how many times each job ran, and where.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from chancy.app import Chancy
from chancy.executor import QueuedJob
from chancy.queue import Queue

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS ledger (
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

chancy = Chancy(
    os.environ.get("LEDGER_DSN"),
    queues=[Queue(name="default", concurrency=int(os.environ.get("LEDGER_CONCURRENCY", "10")))],
)

_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _ledger() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            dsn = os.environ["LEDGER_DSN"].replace("postgresql+asyncpg://", "postgresql://")
            _pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    return _pool


async def record(n: int, *, job: QueuedJob) -> int:
    """Write this run to the ledger."""
    pool = await _ledger()
    await pool.execute(
        "INSERT INTO ledger (job_id, attempt, pid) VALUES ($1, $2, $3)",
        job.id,
        job.attempts,
        os.getpid(),
    )
    return n


async def record_then_sleep(seconds: float, *, job: QueuedJob) -> int:
    """Write this run to the ledger, then take ``seconds``."""
    await record(0, job=job)
    await asyncio.sleep(seconds)
    return job.attempts
