"""The jobs of the chaos suite, and the app its worker processes import.

Run as ``chancy worker --app benchmarks.chaos.jobs:chancy`` with ``CHAOS_DSN`` set. A run of a
job appends a row to the ledger (job id, attempt, worker pid, worker id, time), in the same
database as the jobs, so the suite can tell exactly which attempts ran where and when,
whatever happened to the worker afterwards. Every run also notes its start in the
worker's journal, a file in ``CHAOS_JOURNAL`` (a line per start: job id, attempt, pid,
time), which commits nothing to the database: it shows runs that ended before their
ledger row, and runs whose start the database forgot.

The worker's connections are named ``chaos-worker:<pid>`` and the ledger's
``chaos-ledger`` (``application_name``), so the connection-cutting scenario can aim at
chancy's connections only, and tell whose they are.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import asyncpg

from chancy.app import Chancy
from chancy.executor import QueuedJob
from chancy.queue import Queue

__all__ = [
    "CREATE_LEDGER",
    "DSN_ENV",
    "JOURNAL_ENV",
    "LEDGER_APPLICATION",
    "WORKER_APPLICATION",
    "chancy",
    "kill_own_worker",
    "record",
    "sleep_then_record",
]

DSN_ENV = "CHAOS_DSN"
JOURNAL_ENV = "CHAOS_JOURNAL"
CONCURRENCY_ENV = "CHAOS_CONCURRENCY"
WORKER_APPLICATION = "chaos-worker"
LEDGER_APPLICATION = "chaos-ledger"
# How long a run keeps trying to write its ledger row while the database is away (a
# restart): long enough to outlast the suite's outages, so a run fails only if it must.
LEDGER_WRITE_PATIENCE = 20.0

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS chaos_ledger (
    token uuid PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    pid int NOT NULL,
    worker_id text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

chancy = Chancy(
    os.environ.get(DSN_ENV),
    queues=[Queue(name="default", concurrency=int(os.environ.get(CONCURRENCY_ENV, "10")))],
    engine_options={
        "connect_args": {
            "server_settings": {"application_name": f"{WORKER_APPLICATION}:{os.getpid()}"}
        }
    },
)

_pool: asyncpg.Pool | None = None
_pool_lock = asyncio.Lock()


async def _ledger_pool() -> asyncpg.Pool:
    global _pool
    async with _pool_lock:
        if _pool is None:
            dsn = os.environ[DSN_ENV].replace("postgresql+asyncpg://", "postgresql://")
            _pool = await asyncpg.create_pool(
                dsn,
                min_size=0,
                max_size=4,
                server_settings={"application_name": LEDGER_APPLICATION},
            )
    return _pool


def _journal_start(job: QueuedJob) -> None:
    """Note that this run of ``job`` starts, in this worker's journal (if there is one):
    one line, written with a single ``write`` to a file opened for appending."""
    directory = os.environ.get(JOURNAL_ENV)
    if not directory:
        return
    line = f"{job.id} {job.attempts} {os.getpid()} {time.time():.6f}\n".encode()
    descriptor = os.open(
        os.path.join(directory, f"{os.getpid()}.journal"),
        os.O_WRONLY | os.O_APPEND | os.O_CREAT,
        0o644,
    )
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


async def _write_ledger(job: QueuedJob) -> None:
    """Append this run's row. A lost connection is retried with the same token, so a row
    whose commit was not acknowledged is not written twice; two runs of one attempt
    (which the fence must make impossible) would still show as two rows."""
    token = uuid.uuid4()
    deadline = time.monotonic() + LEDGER_WRITE_PATIENCE
    delay = 0.05
    while True:
        try:
            pool = await _ledger_pool()
            await pool.execute(
                "INSERT INTO chaos_ledger (token, job_id, attempt, pid, worker_id) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token) DO NOTHING",
                token,
                job.id,
                job.attempts,
                os.getpid(),
                job.worker_id,
            )
            return
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # a server shutting down mid-query can cause it
        ):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def record(n: int, seconds: float = 0.0, *, job: QueuedJob) -> dict[str, Any]:
    """Write this run to the ledger, take ``seconds``, and return which run this was:
    the attempt and the worker's pid (so a stale outcome would show in ``result``)."""
    _journal_start(job)
    await _write_ledger(job)
    if seconds:
        await asyncio.sleep(seconds)
    return {"n": n, "attempt": job.attempts, "pid": os.getpid()}


async def kill_own_worker(*, job: QueuedJob) -> None:
    """A poison job: write the ledger row, then SIGKILL the worker process running it."""
    _journal_start(job)
    await _write_ledger(job)
    os.kill(os.getpid(), signal.SIGKILL)


async def sleep_then_record(n: int, seconds: float = 0.0, *, job: QueuedJob) -> dict[str, Any]:
    """Take ``seconds``, then write this run to the ledger and return which run it was
    (a run that commits nothing to the database until it ends)."""
    _journal_start(job)
    if seconds:
        await asyncio.sleep(seconds)
    await _write_ledger(job)
    return {"n": n, "attempt": job.attempts, "pid": os.getpid()}
