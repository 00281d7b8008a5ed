"""The pgqueuer worker of the benchmarks: ``python -m benchmarks.peers.pgqueuer_worker
[--batch-size N] [--max-concurrent-tasks N]``, with ``BENCH_DSN`` set to the scenario's
database, from the repository root.

It runs what ``pgq run benchmarks.peers.pgqueuer_worker:create`` runs, through
pgqueuer's Python entry point for it (``pgqueuer.run``, "as pgq run does, without the
CLI") and on the event loop ``pgq run`` picks (uvloop, which pgqueuer installs): the
command itself fails before starting with the typer release chancy installs (its
``--log-level`` option reaches pgqueuer as a string). SIGTERM stops it, as it stops
``pgq run``. The factory is the shape pgqueuer documents: an async context manager that
connects with asyncpg and yields a ``PgQueuer`` with one entrypoint, a no-op job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence

import asyncpg
from pgqueuer import PgQueuer, run
from pgqueuer.models import Job

from benchmarks import tasks

__all__ = ["ENTRYPOINT", "create", "main", "noop"]

ENTRYPOINT = tasks.QUEUE
"""The entrypoint the benchmarks enqueue to (named as chancy's queue)."""


async def noop(job: Job) -> None:
    """Do nothing: what is measured is the queue, not the job."""


@contextlib.asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    """A PgQueuer on one asyncpg connection to ``BENCH_DSN``, running :func:`noop`."""
    connection = await asyncpg.connect(os.environ[tasks.DSN_ENV])
    try:
        pgq = PgQueuer.from_asyncpg_connection(connection)
        pgq.entrypoint(ENTRYPOINT)(noop)
        yield pgq
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker until SIGTERM or SIGINT; the options are ``pgq run``'s, with its
    defaults."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.pgqueuer_worker")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--max-concurrent-tasks", type=int, default=None)
    arguments = parser.parse_args(argv)
    worker = run(
        create,
        batch_size=arguments.batch_size,
        max_concurrent_tasks=arguments.max_concurrent_tasks,
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(worker)
    else:
        uvloop.run(worker)


if __name__ == "__main__":
    main()
