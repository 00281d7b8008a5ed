"""The jobs of the chaos suite, and the app its worker processes import.

Run as ``chancy worker --app benchmarks.chaos.jobs:chancy`` with ``CHAOS_DSN`` set. A run of a
job appends a row to the ledger (job id, attempt, fence, worker pid, worker id, time; a plain
function running in a thread also notes when it ended), in the same database as the jobs,
so the suite can tell exactly which attempts ran where and when, whatever happened to the
worker afterwards. Every run also notes its start in the worker's journal, a file in
``CHAOS_JOURNAL`` (a line per start: job id, attempt, pid, time, fence), which commits nothing to
the database: it shows runs that ended before their ledger row, and runs whose start the
database forgot.

The worker's connections are named ``chaos-worker:<pid>`` and the ledger's
``chaos-ledger`` (``application_name``), so the connection-cutting scenario can aim at
chancy's connections only, and tell whose they are.

The hostile jobs (at the end) do what a job should not: return what PostgreSQL
cannot store, raise errors holding it, try to exit the worker, raise ``CancelledError``
themselves, or hold a thread past the workers' ``shutdown_timeout``; the slow import is
:mod:`benchmarks.chaos.slow_import`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

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
    "exit_worker",
    "exit_worker_in_thread",
    "hold_thread",
    "kill_own_worker",
    "poison_result",
    "raise_cancelled",
    "raise_poison",
    "record",
    "record_in_thread",
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
    fence bigint,
    pid int NOT NULL,
    worker_id text,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at timestamptz
)
"""
# What a hostile job returns or puts in its error's message: text PostgreSQL's jsonb
# refuses (a NUL, a lone surrogate), or a list nested too deeply to write as JSON.
POISON_DEPTH = 100_000


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
    line = f"{job.id} {job.attempts} {os.getpid()} {time.time():.6f} {job.fence}\n".encode()
    descriptor = os.open(
        os.path.join(directory, f"{os.getpid()}.journal"),
        os.O_WRONLY | os.O_APPEND | os.O_CREAT,
        0o644,
    )
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


async def _write_ledger(job: QueuedJob) -> uuid.UUID:
    """Append this run's row, and return its token. A lost connection is retried with the
    same token, so a row whose commit was not acknowledged is not written twice; two runs
    of one attempt (which the fence must make impossible) would still show as two rows."""
    token = uuid.uuid4()

    async def insert() -> None:
        pool = await _ledger_pool()
        await pool.execute(
            INSERT_RUN, token, job.id, job.attempts, job.fence, os.getpid(), job.worker_id
        )

    await _patiently(insert)
    return token


INSERT_RUN = (
    "INSERT INTO chaos_ledger (token, job_id, attempt, fence, pid, worker_id) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token) DO NOTHING"
)


def _which_run(n: int, job: QueuedJob) -> dict[str, Any]:
    """What a run returns: its job's number, and the attempt, fence and pid of the run, so
    that a stale outcome would show in the stored ``result``."""
    return {"n": n, "attempt": job.attempts, "fence": job.fence, "pid": os.getpid()}


END_RUN = "UPDATE chaos_ledger SET ended_at = clock_timestamp() WHERE token = $1"


async def _patiently(write: Callable[[], Awaitable[None]]) -> None:
    """Run ``write`` until it succeeds, retrying while the database is away for at most
    :data:`LEDGER_WRITE_PATIENCE` seconds."""
    deadline = time.monotonic() + LEDGER_WRITE_PATIENCE
    delay = 0.05
    while True:
        try:
            await write()
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


def _write_ledger_from_thread(query: str, *arguments: Any) -> None:
    """Run one ledger statement from a job's thread, on a connection of its own (the
    ledger's pool belongs to the worker's loop)."""

    async def once() -> None:
        dsn = os.environ[DSN_ENV].replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(
            dsn, server_settings={"application_name": LEDGER_APPLICATION}
        )
        try:
            await connection.execute(query, *arguments)
        finally:
            await connection.close()

    asyncio.run(_patiently(once))


def _start_in_thread(job: QueuedJob) -> uuid.UUID:
    """Note this run's start in the journal and the ledger, from a job's thread."""
    _journal_start(job)
    token = uuid.uuid4()
    _write_ledger_from_thread(
        INSERT_RUN, token, job.id, job.attempts, job.fence, os.getpid(), job.worker_id
    )
    return token


async def record(n: int, seconds: float = 0.0, *, job: QueuedJob) -> dict[str, Any]:
    """Write this run to the ledger, take ``seconds``, and return which run this was:
    the attempt and the worker's pid (so a stale outcome would show in ``result``)."""
    _journal_start(job)
    await _write_ledger(job)
    if seconds:
        await asyncio.sleep(seconds)
    return _which_run(n, job)


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
    return _which_run(n, job)


# The hostile jobs. Each notes its run (journal and ledger) first, so the suite sees every
# run, then misbehaves.


def poison_value(kind: str) -> Any:
    """What PostgreSQL cannot store in ``jsonb`` (``nul``, ``surrogate``), or what cannot
    be written as JSON at all (``deep``)."""
    if kind == "nul":
        return "a\x00b"
    if kind == "surrogate":
        return os.fsdecode(b"\xff")  # a lone surrogate, as for a file name in another encoding
    value: list[Any] = []
    for _ in range(POISON_DEPTH):
        value = [value]
    return value


async def poison_result(kind: str, *, job: QueuedJob) -> Any:
    """Return :func:`poison_value` of ``kind``: the job must fail (``ResultNotJSON``, not
    retried) and every other outcome be written all the same."""
    _journal_start(job)
    await _write_ledger(job)
    return poison_value(kind)


async def raise_poison(kind: str, *, job: QueuedJob) -> None:
    """Raise a ``ValueError`` whose message holds :func:`poison_value` of ``kind`` (``nul``
    or ``surrogate``): stored escaped, retried as any error."""
    _journal_start(job)
    await _write_ledger(job)
    raise ValueError(f"poison {kind}: {poison_value(kind)}")


async def raise_cancelled(*, job: QueuedJob) -> None:
    """Raise ``CancelledError`` itself (nobody cancelled it): an error like any other."""
    _journal_start(job)
    await _write_ledger(job)
    raise asyncio.CancelledError


def _exit(how: str) -> NoReturn:
    if how == "exit":
        sys.exit(3)
    raise KeyboardInterrupt


async def exit_worker(how: str, *, job: QueuedJob) -> None:
    """On the worker's loop: ``sys.exit(3)`` (``how="exit"``) or raise
    ``KeyboardInterrupt``. The job must fail (``JobExitError``) and the worker run on."""
    _journal_start(job)
    await _write_ledger(job)
    _exit(how)


def exit_worker_in_thread(how: str, *, job: QueuedJob) -> None:
    """:func:`exit_worker` as a plain function, in a thread."""
    _start_in_thread(job)
    _exit(how)


def record_in_thread(n: int, *, job: QueuedJob) -> dict[str, Any]:
    """:func:`record` as a plain function, in a thread (without taking any time)."""
    _start_in_thread(job)
    return _which_run(n, job)


def hold_thread(n: int, seconds: float, *, job: QueuedJob) -> dict[str, Any]:
    """A plain function that takes ``seconds`` in its thread (longer than the workers'
    ``shutdown_timeout``: a stop cannot interrupt it), notes its end in the ledger, and
    returns which run it was."""
    token = _start_in_thread(job)
    time.sleep(seconds)
    _write_ledger_from_thread(END_RUN, token)
    return _which_run(n, job)
