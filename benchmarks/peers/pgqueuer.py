"""pgqueuer beside chancy: S1 to S4 and S7 through pgqueuer's public API.

- Schema: each scenario's fresh database gets pgqueuer's schema from its own command,
  ``pgq install`` (run as ``python -m pgqueuer install``, the DSN in ``PGDSN``).
- Pushes (S1, S2, S7): ``Queries.enqueue``: one entrypoint and payload per call for
  single jobs, the list form (entrypoints, payloads, priorities) for a batch. A job
  is the entrypoint ``bench`` with no payload (chancy's is a no-op function without
  arguments).
- Draining (S3) and latency (S4): a worker process running what ``pgq run`` runs, on
  the factory in :mod:`benchmarks.peers.pgqueuer_worker` (which says why not the
  command itself).
  S3 runs it twice: with ``--batch-size 5 --max-concurrent-tasks 10`` (at most 10 jobs
  at a time, as chancy's worker at concurrency 10; pgqueuer requires the cap to be at
  least twice the batch), and with pgqueuer's own defaults (batch 10, no cap).
- Counts: pgqueuer keeps a queued or running job in its table ``pgqueuer``, deletes it
  when it is done, and writes every step (``queued``, ``picked``, ``successful``, ...)
  to ``pgqueuer_log`` with the time of its transaction. The scenarios count jobs there,
  and take a drain's duration (first ``picked`` to last ``successful``) and each job's
  push-to-start latency (``picked`` - ``queued``) from the log, as chancy's are taken
  from ``created_at``, ``started_at`` and ``completed_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from pgqueuer import Queries

from benchmarks import tasks
from benchmarks.context import (
    PUSH_CHUNK,
    WARM_UP_PUSHES,
    Context,
    Latencies,
    drain_timeout,
    expect_count,
    measure_latency,
)
from benchmarks.peers.pgqueuer_worker import ENTRYPOINT
from benchmarks.report import PeerFigure, fmt_rate
from benchmarks.server import Database
from benchmarks.workers import VerificationError, WorkerProcess

__all__ = [
    "DEFAULTS",
    "LIKE_CHANCY",
    "WorkerConfig",
    "drain",
    "label",
    "latency",
    "push_in_batches",
    "push_one_at_a_time",
    "pusher",
]

WARM_UP_ENTRYPOINT = tasks.WARM_UP_QUEUE
INSTALL_TIMEOUT = 120.0

QUEUED_COUNT = "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1 AND status = 'queued'"
SUCCEEDED_COUNT = (
    "SELECT count(*) FROM pgqueuer_log WHERE job_id = ANY($1::bigint[]) AND status = 'successful'"
)
DRAIN_LOG = """
SELECT count(*) FILTER (WHERE status = 'successful') AS succeeded,
       count(*) FILTER (WHERE status = 'picked') AS picked,
       count(*) FILTER (WHERE status NOT IN ('queued', 'picked', 'successful')) AS other,
       min(created) FILTER (WHERE status = 'picked') AS first_picked,
       max(created) FILTER (WHERE status = 'successful') AS last_done,
       (SELECT count(*) FROM pgqueuer WHERE entrypoint = $1) AS left_in_queue
  FROM pgqueuer_log
 WHERE entrypoint = $1
"""
LATENCIES = """
SELECT extract(epoch FROM picked.created - queued.created)::float8 * 1000 AS ms
  FROM pgqueuer_log queued
  JOIN pgqueuer_log picked ON picked.job_id = queued.job_id AND picked.status = 'picked'
 WHERE queued.status = 'queued' AND queued.job_id = ANY($1::bigint[])
"""


def label(config: str = "") -> str:
    """``pgqueuer 1.6.0`` (and the worker configuration, if any)."""
    name = f"pgqueuer {importlib.metadata.version('pgqueuer')}"
    return f"{name}, {config}" if config else name


async def install(database: Database) -> None:
    """Install pgqueuer's schema into ``database`` with its own command (``pgq install``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pgqueuer",
        "install",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PGDSN": database.dsn},
    )
    output, _ = await asyncio.wait_for(process.communicate(), INSTALL_TIMEOUT)
    if process.returncode != 0:
        raise RuntimeError(
            f"pgq install exited with {process.returncode}: "
            f"{output.decode(errors='replace')[-500:]}"
        )


@contextlib.asynccontextmanager
async def fresh_database(context: Context, scenario_id: str) -> AsyncIterator[Database]:
    """A new database of the run's server with pgqueuer's schema, dropped afterwards."""
    async with context.server.fresh_database(f"{scenario_id}_pgq", migrate=False) as database:
        await install(database)
        yield database


async def push_one_at_a_time(context: Context, figure: PeerFigure, count: int) -> None:
    """S1: ``Queries.enqueue(entrypoint, payload)``, one job per call, on one connection."""
    async with fresh_database(context, "S1") as database:
        connection = await database.connect()
        try:
            queries = Queries.from_asyncpg_connection(connection)
            for _ in range(WARM_UP_PUSHES):
                await queries.enqueue(WARM_UP_ENTRYPOINT, None)
            started = time.perf_counter()
            for _ in range(count):
                await queries.enqueue(ENTRYPOINT, None)
            rate = count / (time.perf_counter() - started)
            await expect_count(
                connection, "queued pgqueuer jobs", QUEUED_COUNT, ENTRYPOINT, expected=count
            )
        finally:
            await connection.close()
    figure.figure, figure.figure_text = rate, fmt_rate(rate)
    figure.extra["jobs"] = count


async def enqueue_many(queries: Queries, count: int) -> None:
    """``count`` jobs through the list form of ``Queries.enqueue``, one call per chunk."""
    for start in range(0, count, PUSH_CHUNK):
        size = min(PUSH_CHUNK, count - start)
        await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)


async def push_in_batches(context: Context, figure: PeerFigure, count: int) -> None:
    """S2: the list form of ``Queries.enqueue``, 1,000 jobs per call."""
    async with fresh_database(context, "S2") as database:
        connection = await database.connect()
        try:
            queries = Queries.from_asyncpg_connection(connection)
            await queries.enqueue(
                [WARM_UP_ENTRYPOINT] * PUSH_CHUNK, [None] * PUSH_CHUNK, [0] * PUSH_CHUNK
            )
            started = time.perf_counter()
            await enqueue_many(queries, count)
            rate = count / (time.perf_counter() - started)
            await expect_count(
                connection, "queued pgqueuer jobs", QUEUED_COUNT, ENTRYPOINT, expected=count
            )
        finally:
            await connection.close()
    figure.figure, figure.figure_text = rate, f"{fmt_rate(rate)} ({PUSH_CHUNK:,}/call)"
    figure.extra.update(jobs=count, chunk=PUSH_CHUNK)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a pgqueuer worker is started: ``pgq run``'s batch size and, if any, its cap
    on jobs running at once (``--max-concurrent-tasks``)."""

    name: str
    batch_size: int
    max_concurrent_tasks: int | None

    def command(self) -> list[str]:
        """The worker's command line (see :mod:`benchmarks.peers.pgqueuer_worker`)."""
        cap = (
            []
            if self.max_concurrent_tasks is None
            else ["--max-concurrent-tasks", str(self.max_concurrent_tasks)]
        )
        return [
            sys.executable,
            "-m",
            "benchmarks.peers.pgqueuer_worker",
            "--batch-size",
            str(self.batch_size),
            *cap,
        ]

    def start(self, database: Database) -> WorkerProcess:
        """A started worker process on ``database``."""
        worker = WorkerProcess(database.dsn, command=self.command())
        worker.start()
        return worker


LIKE_CHANCY = WorkerConfig("10 at a time", batch_size=5, max_concurrent_tasks=10)
"""At most 10 jobs at once, as chancy's worker at concurrency 10."""
DEFAULTS = WorkerConfig("own defaults", batch_size=10, max_concurrent_tasks=None)
"""``pgq run`` as it comes: batches of 10, no cap on jobs at once."""


@contextlib.asynccontextmanager
async def running(worker: WorkerProcess) -> AsyncIterator[WorkerProcess]:
    """``worker``, stopped (SIGTERM, then SIGKILL) when the block ends."""
    try:
        yield worker
    finally:
        await asyncio.to_thread(worker.stop)


async def drain(context: Context, figure: PeerFigure, count: int, config: WorkerConfig) -> None:
    """S3: one pgqueuer worker drains ``count`` pre-enqueued no-op jobs; jobs/s from
    its log (first ``picked`` to last ``successful``)."""
    async with fresh_database(context, "S3") as database:
        connection = await database.connect()
        try:
            await enqueue_many(Queries.from_asyncpg_connection(connection), count)
            context.say(f"S3: a pgqueuer worker ({config.name}) draining {count:,} jobs")
            started = time.monotonic()
            async with running(config.start(database)) as worker:
                await wait_emptied(connection, worker, timeout=drain_timeout(count))
                wall = time.monotonic() - started
                figure.notes.extend(worker.log_problems())
            row = await connection.fetchrow(DRAIN_LOG, ENTRYPOINT)
        finally:
            await connection.close()
    assert row is not None
    if row["succeeded"] != count or row["other"] or row["left_in_queue"]:
        raise VerificationError(
            f"expected {count} successful pgqueuer jobs and none left, found "
            f"{row['succeeded']} successful, {row['other']} other outcomes, "
            f"{row['left_in_queue']} still in the queue"
        )
    seconds = (row["last_done"] - row["first_picked"]).total_seconds()
    rate = count / seconds
    figure.figure, figure.figure_text = rate, fmt_rate(rate)
    figure.extra.update(
        jobs=count,
        batch_size=config.batch_size,
        max_concurrent_tasks=config.max_concurrent_tasks,
        drain_s=seconds,
        wall_s=wall,
        picks=row["picked"],
    )
    figure.notes.append(
        f"pgqueuer.run, as pgq run --batch-size {config.batch_size}"
        + (
            f" --max-concurrent-tasks {config.max_concurrent_tasks}"
            if config.max_concurrent_tasks
            else ""
        )
        + f"; drain {seconds:.2f} s by the database's clock (first picked to last "
        f"successful in pgqueuer_log); wall {wall:.2f} s from process start"
    )


async def wait_emptied(
    connection: asyncpg.Connection, worker: WorkerProcess, timeout: float
) -> None:
    """Wait until the queue table holds no job of the entrypoint (pgqueuer deletes a
    job when it is done), checking that the worker is alive."""
    deadline = time.monotonic() + timeout
    while await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pgqueuer WHERE entrypoint = $1)", ENTRYPOINT
    ):
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pgqueuer queue was not drained within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def latency(context: Context, figure: PeerFigure, count: int) -> None:
    """S4: an idle pgqueuer worker (own defaults); jobs enqueued 20 ms apart; each
    job's ``picked`` - ``queued`` time from pgqueuer's log."""
    async with fresh_database(context, "S4") as database:
        connection = await database.connect()
        pushing = await database.connect()
        try:
            queries = Queries.from_asyncpg_connection(pushing)

            async def push() -> int:
                (job_id,) = await queries.enqueue(ENTRYPOINT, None)
                return int(job_id)

            async with running(DEFAULTS.start(database)) as worker:
                ids, push_ms = await measure_latency(
                    context,
                    connection,
                    push,
                    count=count,
                    finished=SUCCEEDED_COUNT,
                    workers=[worker],
                    what="pgqueuer jobs",
                )
                figure.notes.extend(worker.log_problems())
            rows = await connection.fetch(LATENCIES, ids)
        finally:
            await pushing.close()
            await connection.close()
    if len(rows) != count:
        raise VerificationError(f"expected {count} picked pgqueuer jobs, found {len(rows)}")
    latencies = Latencies.of([float(row["ms"]) for row in rows])
    figure.figure, figure.figure_text = latencies.p50, latencies.text
    figure.extra.update(
        **latencies.as_extra(), jobs=count, push_call_p50_ms=statistics.median(push_ms)
    )
    figure.notes.append(
        "latency = picked - queued in pgqueuer_log (database clock, each its transaction's "
        "start); worker: pgqueuer.run (as pgq run) with its own defaults"
    )


@contextlib.asynccontextmanager
async def pusher(dsn: str, connections: int) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """A ``push(entrypoint)`` enqueueing one job per call through ``Queries`` on an
    asyncpg pool of ``connections`` connections (S7's producers share it)."""
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    try:
        queries = Queries.from_asyncpg_pool(pool)

        async def push(entrypoint: str) -> None:
            await queries.enqueue(entrypoint, None)

        yield push
    finally:
        await pool.close()
