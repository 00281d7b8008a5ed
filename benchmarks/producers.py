"""S7: 16 concurrent producers, each pushing single jobs, one call and one transaction
per job: (a) 16 asyncio tasks in one process sharing one app, (b) 4 processes of 4
tasks each. Against ``pgbench`` with 16 clients committing one-row INSERTs into a plain
table (:mod:`benchmarks.pgbench`), in the same database, in the same run.

This is a web application's shape: many request handlers, each pushing a job in its own
transaction. The scenario's figure is the lower of (a) and (b), and its target (≥ 0.60
of the ceiling) is met only if both reach it; both figures are in the table's cell and
the JSON line.

A producer process is ``python -m benchmarks.producers --library chancy --tasks 4 --jobs
N`` with ``BENCH_DSN`` set: it connects and warms up, prints ``ready``, waits for a line
on its standard input, pushes, then prints one JSON line with its wall-clock start and
end (``time.time()``, one clock for every process of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import IO

from sqlalchemy.engine import make_url

from benchmarks import ceilings, tasks
from benchmarks.context import NOOP, PENDING_COUNT, Context, expect_count
from benchmarks.cpu import CpuMeter, CpuUsage, find_postmaster
from benchmarks.pgbench import find_pgbench, insert_ceiling, pgbench_version
from benchmarks.report import PeerFigure, Result, fmt_rate
from benchmarks.server import Database
from benchmarks.workers import ROOT

__all__ = ["LIBRARIES", "main", "sixteen_producers"]

PRODUCERS = 16
PROCESSES = 4
PGBENCH_THREADS = 2
PGBENCH_SECONDS = 5
WARM_UP_PER_TASK = 3
READY_TIMEOUT = 120.0
MINIMUM_RATIO = 0.60
PEER_FACTOR = 2.0
LIBRARIES = ("chancy", "pgqueuer")

Push = Callable[[str], Awaitable[object]]
"""Push one no-op job into the named queue (or pgqueuer entrypoint), in its own
transaction."""


@contextlib.asynccontextmanager
async def chancy_pusher(dsn: str) -> AsyncIterator[Push]:
    """``chancy.push(queue, job)`` on one :class:`~chancy.Chancy` (its own engine and
    pool, as an application has)."""
    async with Database(make_url(dsn)).chancy() as chancy:

        async def push(queue: str) -> None:
            await chancy.push(queue, NOOP)

        yield push


def pusher(
    library: str, dsn: str, connections: int
) -> contextlib.AbstractAsyncContextManager[Push]:
    """The push of ``library`` on the database ``dsn``; a peer's gets a pool of
    ``connections`` (chancy's engine keeps its own pool settings)."""
    if library == "chancy":
        return chancy_pusher(dsn)
    from benchmarks.peers import pgqueuer

    return pgqueuer.pusher(dsn, connections)


async def warm_up(push: Push, producers: int) -> None:
    """A few pushes from every producer at once, into the warm-up queue, so that the
    connections are open before the clock starts."""

    async def producer() -> None:
        for _ in range(WARM_UP_PER_TASK):
            await push(tasks.WARM_UP_QUEUE)

    await asyncio.gather(*(producer() for _ in range(producers)))


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One run of producers: its wall-clock start and end (``time.time()``, one clock for
    every process of the machine) and the CPU seconds its process used meanwhile."""

    started: float
    finished: float
    cpu: float


async def produce(push: Push, producers: int, jobs_per_producer: int) -> Span:
    """``producers`` tasks each pushing ``jobs_per_producer`` jobs, one per call."""

    async def producer() -> None:
        for _ in range(jobs_per_producer):
            await push(tasks.QUEUE)

    started, cpu = time.time(), time.process_time()
    await asyncio.gather(*(producer() for _ in range(producers)))
    return Span(started=started, finished=time.time(), cpu=time.process_time() - cpu)


@dataclasses.dataclass(frozen=True, slots=True)
class Way:
    """One way of pushing in S7 ((a) or (b)): jobs/s, and the CPU the producer processes
    (each), the server and the machine used while they pushed."""

    rate: float
    cpu: CpuUsage

    @classmethod
    def of(cls, jobs: int, spans: Sequence[Span], usage: CpuUsage) -> Way:
        """From the spans of the producer processes (jobs/s from the first start to the
        last end) and the server's and machine's usage over the same time."""
        seconds = max(span.finished for span in spans) - min(span.started for span in spans)
        producers = tuple(100 * span.cpu / seconds for span in spans)
        return cls(rate=jobs / seconds, cpu=dataclasses.replace(usage, workers=producers))


async def produce_in_one_process(
    library: str, dsn: str, jobs_per_producer: int, meter: CpuMeter
) -> Way:
    """(a): :data:`PRODUCERS` tasks in this process."""
    async with pusher(library, dsn, PRODUCERS) as push:
        await warm_up(push, PRODUCERS)
        before = meter.sample()
        span = await produce(push, PRODUCERS, jobs_per_producer)
        usage = CpuMeter.usage(before, meter.sample())
    return Way.of(PRODUCERS * jobs_per_producer, [span], usage)


class ErrorRecords(logging.Handler):
    """Keeps the ERROR records logged in this process while it is installed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def describe(self, what: str) -> list[str]:
        """A note on the records (none if there are none): how many, and the first."""
        if not self.records:
            return []
        first = self.records[0]
        cause = f" ({type(first.exc_info[1]).__name__})" if first.exc_info else ""
        message = first.getMessage().splitlines()[0][:200]
        return [
            f"{what}: {len(self.records)} error(s) logged in the producers' process; first: "
            f"{first.name}: {message}{cause}"
        ]


@contextlib.contextmanager
def errors_logged() -> Iterator[ErrorRecords]:
    """The ERROR records logged (to any logger that propagates) inside the block."""
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def produce_in_processes(
    library: str, dsn: str, jobs_per_producer: int, meter: CpuMeter
) -> Way:
    """(b): :data:`PROCESSES` producer processes of ``PRODUCERS / PROCESSES`` tasks each,
    started together once all are ready."""
    per_process = PRODUCERS // PROCESSES
    command = [
        sys.executable,
        "-m",
        "benchmarks.producers",
        "--library",
        library,
        "--tasks",
        str(per_process),
        "--jobs",
        str(jobs_per_producer),
    ]
    env = {**os.environ, tasks.DSN_ENV: dsn, "PYTHONPATH": str(ROOT)}
    with contextlib.ExitStack() as stack:
        logs = [
            stack.enter_context(tempfile.TemporaryFile(prefix="chancy-bench-producer-"))
            for _ in range(PROCESSES)
        ]
        processes = [
            await asyncio.create_subprocess_exec(
                *command,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
            for log in logs
        ]
        try:
            await wait_ready(processes, logs)
            before = meter.sample()
            spans = await run_processes(processes, logs)
            usage = CpuMeter.usage(before, meter.sample())
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    return Way.of(PRODUCERS * jobs_per_producer, spans, usage)


async def wait_ready(
    processes: Sequence[asyncio.subprocess.Process], logs: Sequence[IO[bytes]]
) -> None:
    """Wait until every producer process has connected and warmed up."""
    for process, log in zip(processes, logs, strict=True):
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        if line.strip() != b"ready":
            await process.wait()
            raise RuntimeError(f"a producer process did not start:\n{log_tail(log)}")


async def run_processes(
    processes: Sequence[asyncio.subprocess.Process], logs: Sequence[IO[bytes]]
) -> list[Span]:
    """Start the ready producers all at once; their spans when they are done."""
    outputs = await asyncio.gather(*(process.communicate(b"go\n") for process in processes))
    spans: list[Span] = []
    for process, log, (output, _) in zip(processes, logs, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(
                f"a producer process exited with {process.returncode}:\n{log_tail(log)}"
            )
        spans.append(Span(**json.loads(output)))
    return spans


def log_tail(log: IO[bytes], lines: int = 15) -> str:
    """The end of a producer's standard error."""
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


async def producer_process(library: str, tasks_here: int, jobs_per_producer: int) -> None:
    """One producer process (see the module's docstring)."""
    async with pusher(library, os.environ[tasks.DSN_ENV], tasks_here) as push:
        await warm_up(push, tasks_here)
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        span = await produce(push, tasks_here, jobs_per_producer)
    print(json.dumps(dataclasses.asdict(span)), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks.producers``: one producer process of S7 (b)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.producers")
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--jobs", type=int, required=True, help="jobs per task")
    arguments = parser.parse_args(argv)
    asyncio.run(producer_process(arguments.library, arguments.tasks, arguments.jobs))


async def both_ways(
    context: Context,
    library: str,
    database: Database,
    jobs_per_producer: int,
    *,
    counted: str,
    notes: list[str],
) -> tuple[Way, Way]:
    """(a) then (b) for ``library``; ``counted`` counts its pushed jobs (the queue or
    entrypoint as its parameter), checked after each. The CPU each way used, and errors
    logged during (a), go into ``notes``."""
    count = PRODUCERS * jobs_per_producer
    meter = CpuMeter([], await find_postmaster(database.dsn))
    connection = await database.connect()
    try:
        context.say(f"S7: {library}, {PRODUCERS} producer tasks in one process")
        with errors_logged() as errors:
            one = await produce_in_one_process(library, database.dsn, jobs_per_producer, meter)
        notes.extend(errors.describe("a"))
        await expect_count(connection, f"{library} jobs", counted, tasks.QUEUE, expected=count)
        context.say(f"S7: {library}, {PROCESSES} processes x {PRODUCERS // PROCESSES} tasks")
        several = await produce_in_processes(library, database.dsn, jobs_per_producer, meter)
        await expect_count(connection, f"{library} jobs", counted, tasks.QUEUE, expected=2 * count)
    finally:
        await connection.close()
    notes.append(f"a: {one.cpu.describe('producer process')}")
    notes.append(f"b: {several.cpu.describe('producer processes')}")
    return one, several


def fill_both(figure: Result | PeerFigure, one: Way, several: Way) -> None:
    """The figure (the lower of both ways), its cell, and each way's figures for the
    JSON line."""
    figure.figure = min(one.rate, several.rate)
    figure.figure_text = f"a {fmt_rate(one.rate)} · b {fmt_rate(several.rate)}"
    figure.extra.update(
        {
            "a_jobs_per_s": one.rate,
            "b_jobs_per_s": several.rate,
            **one.cpu.as_extra("a_cpu", "producers"),
            **several.cpu.as_extra("b_cpu", "producers"),
        }
    )


async def sixteen_producers(context: Context, result: Result) -> None:
    """S7: chancy's (a) and (b), then the pgbench ceiling, then the peers'."""
    jobs_per_producer = context.scaled(1_000, 50)
    count = PRODUCERS * jobs_per_producer
    result.target = f"ratio ≥ {MINIMUM_RATIO:.2f} (a and b)"
    async with context.server.fresh_database("S7") as database:
        one, several = await both_ways(
            context,
            "chancy",
            database,
            jobs_per_producer,
            counted=PENDING_COUNT,
            notes=result.notes,
        )
        await pgbench_ceiling(context, result, database)
    result.unit = "jobs/s"
    fill_both(result, one, several)
    result.extra.update(jobs_per_way=count, producers=PRODUCERS, processes=PROCESSES)
    if result.ceiling is not None and result.figure is not None:
        result.ratio = result.figure / result.ceiling
        result.met = result.ratio >= MINIMUM_RATIO
        result.extra.update(
            a_ratio=one.rate / result.ceiling, b_ratio=several.rate / result.ceiling
        )
    result.notes.append(
        f"a: {PRODUCERS} asyncio tasks on one Chancy (its engine's default pool); b: "
        f"{PROCESSES} processes x {PRODUCERS // PROCESSES} tasks, one Chancy each; "
        f"{count:,} jobs each way, one push call and transaction per job; the figure and "
        "ratio are the lower of a and b"
    )
    if context.peers:
        from benchmarks.peers import compare, pgqueuer

        async def peer(figure: PeerFigure) -> None:
            async with pgqueuer.fresh_database(context, "S7") as peer_database:
                a, b = await both_ways(
                    context,
                    "pgqueuer",
                    peer_database,
                    jobs_per_producer,
                    counted=pgqueuer.QUEUED_COUNT,
                    notes=figure.notes,
                )
            fill_both(figure, a, b)
            figure.notes.append(
                f"Queries.enqueue, one job per call, on an asyncpg pool of {PRODUCERS} "
                f"connections (a) or {PRODUCERS // PROCESSES} per process (b)"
            )

        await compare(result, pgqueuer.label(), peer, minimum_factor=PEER_FACTOR)


async def pgbench_ceiling(context: Context, result: Result, database: Database) -> None:
    """pgbench's 16 clients of one-row INSERTs into the plain table of ``database`` for a
    few seconds (5 at scale 1, at least 2); fills in the result's ceiling, or says why
    there is none."""
    seconds = context.scaled(PGBENCH_SECONDS, 2)
    postmaster = await find_postmaster(database.dsn)
    pgbench = find_pgbench(postmaster)
    if pgbench is None:
        result.ceiling_text = "pgbench not found"
        result.notes.append(
            "no ceiling: pgbench is not next to the server's programs, on PATH or in "
            "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql-client)"
        )
        return
    connection = await database.connect()
    try:
        await ceilings.create_plain_table(connection)
        context.say(f"S7: ceiling (pgbench, {PRODUCERS} clients)")
        meter = CpuMeter([], postmaster)
        before = meter.sample()
        run = await insert_ceiling(
            pgbench,
            database.url,
            clients=PRODUCERS,
            threads=PGBENCH_THREADS,
            seconds=seconds,
        )
        usage = CpuMeter.usage(before, meter.sample())
        await expect_count(
            connection,
            "plain rows (pgbench's transactions)",
            f"SELECT count(*) FROM {ceilings.PLAIN_TABLE}",
            expected=run.transactions,
        )
    finally:
        await connection.close()
    result.ceiling = run.tps
    result.ceiling_text = f"{fmt_rate(run.tps)} (pgbench, {PRODUCERS} clients)"
    result.extra.update(pgbench=str(pgbench), pgbench_version=await pgbench_version(pgbench))
    result.notes.append(
        f"ceiling: {pgbench} -n -M prepared -c {PRODUCERS} -j {PGBENCH_THREADS} "
        f"-T {seconds}: {run.transactions:,} transactions of one one-row INSERT ... RETURNING "
        "id each"
    )
    result.notes.append(f"ceiling: {usage.describe()}")


if __name__ == "__main__":
    main()
