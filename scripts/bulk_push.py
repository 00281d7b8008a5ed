"""``push_many`` of many jobs in one call against the same jobs in chunks, on one server.

::

    python scripts/bulk_push.py [--dsn DSN] [--jobs 50000] [--chunk 1000] [--rounds 3]

Each round pushes ``--jobs`` no-op jobs once in one call and once in calls of ``--chunk``
jobs (which goes first alternates), deleting them in between; the best round of each is
reported, in jobs per second, with their ratio. One call must be at least as fast per job
(chancy splits it into statements of 2,000 jobs in one transaction). The database is
chancy's usual one (``--dsn``, ``CHANCY_DSN``, or the embedded server); its schema is
migrated first, and the jobs pushed are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.executor import Job
from chancy.models import JobRow
from chancy.queue import Queue

QUEUE = "bulk_push_script"


def noop(n: int) -> None:
    """The job pushed (never run)."""


async def timed_push(chancy: Chancy, jobs: Sequence[Job], chunk: int) -> float:
    """Jobs per second of pushing ``jobs`` in calls of ``chunk``, then delete them."""
    started = time.perf_counter()
    for start in range(0, len(jobs), chunk):
        await chancy.push_many(QUEUE, jobs[start : start + chunk])
    rate = len(jobs) / (time.perf_counter() - started)
    async with chancy.engine.begin() as connection:
        await connection.execute(sa.delete(JobRow).where(JobRow.queue == QUEUE))
    return rate


async def compare(dsn: str | None, jobs: int, chunk: int, rounds: int) -> None:
    job = Job.from_func(noop, kwargs={"n": 1})
    batch = [job] * jobs
    best = {"one call": 0.0, f"chunks of {chunk:,}": 0.0}
    async with Chancy(dsn, queues=[Queue(name=QUEUE)]) as chancy:
        await chancy.migrate()
        await timed_push(chancy, batch[: 2 * chunk], chunk)  # prepares the statements
        for round_ in range(rounds):
            ways = [("one call", jobs), (f"chunks of {chunk:,}", chunk)]
            for name, size in ways if round_ % 2 == 0 else ways[::-1]:
                best[name] = max(best[name], await timed_push(chancy, batch, size))
    for name, rate in best.items():
        print(f"{jobs:,} jobs, {name}: {rate:,.0f} jobs/s (best of {rounds})")
    one, chunked = best.values()
    print(f"one call / chunks: {one / chunked:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args(argv)
    asyncio.run(compare(arguments.dsn, arguments.jobs, arguments.chunk, arguments.rounds))


if __name__ == "__main__":
    main()
