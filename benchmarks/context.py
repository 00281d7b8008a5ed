"""What every scenario gets and shares: the :class:`Context` of the run, the
:class:`Scenario` record, and the helpers that push, count and fill in a figure."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from rich.console import Console

from benchmarks import tasks
from benchmarks.report import Result, fmt_rate
from benchmarks.server import Database, Server
from benchmarks.workers import VerificationError, WorkerProcess
from chancy import Job

__all__ = [
    "LATENCY_SPACING",
    "NOOP",
    "PENDING_COUNT",
    "PUSH_CHUNK",
    "WARM_UP_PUSHES",
    "WORKER_CONCURRENCY",
    "Context",
    "Latencies",
    "Scenario",
    "drain_timeout",
    "expect_count",
    "fill_throughput",
    "measure_latency",
    "percentile",
    "prepush",
    "wait_for_count",
]

WORKER_CONCURRENCY = 10
PUSH_CHUNK = 1_000
WARM_UP_PUSHES = 20

NOOP = Job.from_func(tasks.noop)

PENDING_COUNT = "SELECT count(*) FROM chancy_jobs WHERE queue = $1 AND state = 'pending'"


@dataclasses.dataclass(slots=True)
class Context:
    """What every scenario gets: the server, the scale, a console for progress (stderr),
    whether peer libraries run beside chancy (``--peers``) and the results of the
    scenarios already run (S6 compares itself with S3)."""

    server: Server
    scale: float
    console: Console
    peers: bool = False
    results: dict[str, Result] = dataclasses.field(default_factory=dict)

    def scaled(self, count: int, minimum: int) -> int:
        """``count`` times the scale, at least ``minimum``."""
        return max(minimum, round(count * self.scale))

    def say(self, message: str) -> None:
        """A progress line on stderr."""
        self.console.log(message, highlight=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: its id, its one-line name, and the coroutine filling its result."""

    id: str
    name: str
    run: Callable[[Context, Result], Awaitable[None]]


async def expect_count(
    connection: asyncpg.Connection, what: str, query: str, *args: Any, expected: int
) -> None:
    """Raise :class:`VerificationError` unless ``query`` counts ``expected`` rows."""
    found = int(await connection.fetchval(query, *args))
    if found != expected:
        raise VerificationError(f"{what}: expected {expected}, found {found}")


async def prepush(
    database: Database, count: int, *, chunk: int = PUSH_CHUNK, context: Context | None = None
) -> int:
    """Push ``count`` no-op jobs with ``push_many`` in chunks; returns the first job's id."""
    first_id: int | None = None
    report_every = max(chunk, count // 5)
    next_report = report_every
    async with database.chancy() as chancy:
        for start in range(0, count, chunk):
            references = await chancy.push_many(tasks.QUEUE, [NOOP] * min(chunk, count - start))
            if first_id is None:
                first_id = references[0].id
            done = min(start + chunk, count)
            if context is not None and next_report <= done < count:
                context.say(f"  pushed {done:,} of {count:,}")
                next_report += report_every
    assert first_id is not None
    return first_id


def drain_timeout(count: int) -> float:
    """A generous bound on a drain (a stuck worker fails the scenario, not the run)."""
    return 120.0 + count / 100.0


def fill_throughput(result: Result, ours: float, ceiling: float, *, minimum_ratio: float) -> None:
    """A jobs/s figure against a jobs/s ceiling."""
    result.figure, result.unit, result.ceiling = ours, "jobs/s", ceiling
    result.ratio = ours / ceiling
    result.met = result.ratio >= minimum_ratio
    result.figure_text, result.ceiling_text = fmt_rate(ours), fmt_rate(ceiling)


def percentile(values: list[float], p: int) -> float:
    """The ``p``-th percentile (inclusive method) of ``values``."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def wait_for_count(
    connection: asyncpg.Connection,
    query: str,
    *args: Any,
    expected: int,
    workers: Sequence[WorkerProcess],
    timeout: float,
    what: str,
) -> None:
    """Poll ``query`` until it counts ``expected`` rows, checking the workers are alive;
    ``what`` names the wait in the timeout's message."""
    deadline = time.monotonic() + timeout
    while int(await connection.fetchval(query, *args)) < expected:
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.05)


LATENCY_SPACING = 0.020
LATENCY_WARM_UP_JOBS = 5
IDLE_PAUSE = 0.5
"""How long the latency scenarios let a worker sit idle (waiting on LISTEN) before the
measured pushes."""


async def push_paced(
    count: int, push: Callable[[], Awaitable[int]]
) -> tuple[list[int], list[float]]:
    """Call ``push`` ``count`` times, :data:`LATENCY_SPACING` apart (start to start);
    returns the job ids it returned and how long each call took (ms, client side)."""
    ids: list[int] = []
    push_ms: list[float] = []
    first = time.monotonic()
    for index in range(count):
        delay = first + index * LATENCY_SPACING - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started = time.perf_counter()
        ids.append(await push())
        push_ms.append((time.perf_counter() - started) * 1000)
    return ids, push_ms


async def measure_latency(
    context: Context,
    connection: asyncpg.Connection,
    push: Callable[[], Awaitable[int]],
    *,
    count: int,
    finished: str,
    workers: Sequence[WorkerProcess],
    what: str,
) -> tuple[list[int], list[float]]:
    """S4's course, whatever the library: run a few warm-up jobs one by one, let the
    worker go idle, push ``count`` jobs paced by :func:`push_paced`, wait until all have
    run. ``finished`` counts the finished jobs among the ids given as its parameter;
    ``what`` names the jobs in progress lines. Returns :func:`push_paced`'s figures."""
    for _ in range(LATENCY_WARM_UP_JOBS):
        await wait_for_count(
            connection,
            finished,
            [await push()],
            expected=1,
            workers=workers,
            timeout=60,
            what="a warm-up job's run",
        )
    await asyncio.sleep(IDLE_PAUSE)  # idle again: the worker waits on LISTEN
    context.say(f"S4: pushing {count} {what} {LATENCY_SPACING * 1000:.0f} ms apart")
    ids, push_ms = await push_paced(count, push)
    await wait_for_count(
        connection,
        finished,
        ids,
        expected=count,
        workers=workers,
        timeout=60,
        what=f"the runs of {count} {what}",
    )
    return ids, push_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Latencies:
    """Percentiles of a series of latencies, in ms."""

    p50: float
    p95: float
    p99: float
    worst: float

    @classmethod
    def of(cls, values: list[float]) -> Latencies:
        """The percentiles of ``values`` (ms)."""
        p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
        return cls(p50=p50, p95=p95, p99=p99, worst=max(values))

    @property
    def text(self) -> str:
        return (
            f"p50 {self.p50:.1f} · p95 {self.p95:.1f} · p99 {self.p99:.1f} · "
            f"max {self.worst:.1f} ms"
        )

    def as_extra(self) -> dict[str, float]:
        """The figures for a JSON line."""
        return {"p50_ms": self.p50, "p95_ms": self.p95, "p99_ms": self.p99, "max_ms": self.worst}
