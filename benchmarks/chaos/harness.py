"""The run every chaos scenario goes through, and what it leaves behind.

A run (:func:`run_scenario`): start a private PostgreSQL; push the scenario's jobs; start
``size.workers`` worker processes (replacing any that die); let the scenario wreak its
chaos for up to ``size.chaos_seconds`` while the workers drain the queue; stop the
workers (SIGTERM); check the invariants on the rows left behind
(:mod:`benchmarks.chaos.invariants`). The result, a :class:`ScenarioRun`, holds the
invariants, the figures and the evidence; the tests assert on it and
``python -m benchmarks.chaos`` prints it. The scenarios themselves are in
:mod:`benchmarks.chaos.scenarios`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

import asyncpg

from benchmarks.chaos import jobs
from benchmarks.chaos.fleet import Fleet, LogSummary, WorkerSettings
from benchmarks.chaos.invariants import Expectation, Invariants, check_invariants
from benchmarks.chaos.server import PrivateServer
from chancy.app import Chancy
from chancy.executor import Job
from chancy.states import UNFINISHED_STATES

__all__ = [
    "MAX_ATTEMPTS",
    "POLL",
    "Context",
    "Monitor",
    "Scenario",
    "ScenarioRun",
    "Size",
    "run_scenario",
]

MAX_ATTEMPTS = 50  # far more than any job can lose to the chaos: only the poison may fail
POLL = 0.2
PUSH_BATCH = 2_000
UNFINISHED = sorted(state.value for state in UNFINISHED_STATES)


@dataclasses.dataclass(frozen=True, slots=True)
class Size:
    """How big a run is: ``jobs`` pushed, chaos for at most ``chaos_seconds`` (it ends
    earlier if the queue is drained), jobs taking ``job_seconds`` each, ``workers``
    processes of ``concurrency`` slots, and at most ``drain_seconds`` (from the start of
    the workers) for every job to finish."""

    jobs: int
    chaos_seconds: float
    job_seconds: float = 0.05
    workers: int = 4
    concurrency: int = 10
    drain_seconds: float = 150.0


@dataclasses.dataclass(frozen=True, slots=True)
class ScenarioRun:
    """What one run of a scenario left behind: the invariants, figures and evidence.

    ``exited``: the pids of the workers that died without being killed by the harness;
    ``crashes`` describes those that had not run a job meant to kill them;
    ``clean_stops``: the pids of the workers that exited with 0 after a SIGTERM.
    """

    name: str
    title: str
    size: Size
    seed: int
    expected: Expectation
    invariants: Invariants
    events: collections.Counter[str]
    logs: LogSummary
    details: dict[str, Any]
    exited: frozenset[int]
    clean_stops: frozenset[int]
    crashes: tuple[str, ...]
    bad_stops: tuple[str, ...]
    drained: bool
    seconds: float

    @property
    def stale_rejected(self) -> int:
        """Outcomes the fence turned away, as the workers logged them."""
        return self.logs.stale_rejected

    def explain(self) -> str:
        """Everything a failing assertion should show: violations, crashes, events, and
        the workers' noteworthy log lines."""
        lines = [
            f"scenario {self.name} (seed {self.seed}, {self.size}), "
            f"{'drained' if self.drained else 'NOT drained'} in {self.seconds:.1f} s",
            self.invariants.explain(),
            f"events: {dict(self.events)}",
            f"interrupted runs: {dict(self.invariants.interrupted_runs)}",
            f"details: {self.details}",
        ]
        lines += [f"crash: {crash}" for crash in self.crashes]
        lines += [f"bad stop: {stop}" for stop in self.bad_stops]
        lines.append("worker log lines (shape: count):")
        lines += [f"  {count:5d}  {shape}" for shape, count in self.logs.noteworthy.most_common(20)]
        lines += ["first lines:", *(f"  {line}" for line in self.logs.excerpt)]
        return "\n".join(lines)


class Monitor:
    """The harness's view of the database: queries that return None while the server is
    away (a restart) instead of failing, reconnecting when it is back. One connection,
    shared by the drain and the chaos, one query at a time."""

    def __init__(self, server: PrivateServer) -> None:
        self._server = server
        self._connection: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def fetch(self, query: str, *arguments: Any) -> list[asyncpg.Record] | None:
        """The rows of ``query``, or None if the database cannot be reached now."""
        async with self._lock:
            try:
                if self._connection is None or self._connection.is_closed():
                    self._connection = await self._server.connect()
                return list(await self._connection.fetch(query, *arguments))
            except (
                OSError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                # A connection the server ended while idle, not yet seen closed.
                asyncpg.exceptions.InternalClientError,
            ):
                await self.close()
                return None

    async def fetchval(self, query: str, *arguments: Any) -> Any:
        """The first value of ``query``, or None if the database cannot be reached now."""
        rows = await self.fetch(query, *arguments)
        return None if not rows else rows[0][0]

    async def unfinished(self) -> int | None:
        """How many jobs are not finished yet."""
        count = await self.fetchval(
            "SELECT count(*) FROM chancy_jobs WHERE state = ANY($1::text[])", UNFINISHED
        )
        return None if count is None else int(count)

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)


@dataclasses.dataclass
class Context:
    """What a scenario's ``push`` and ``chaos`` work with."""

    server: PrivateServer
    fleet: Fleet
    monitor: Monitor
    chancy: Chancy
    size: Size
    random: random.Random
    events: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    drained: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    chaos_ends: float = float("inf")

    @property
    def chaos_on(self) -> bool:
        """Whether the chaos should go on: its time is not up, and jobs are left."""
        return time.monotonic() < self.chaos_ends and not self.drained.is_set()

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (less if the chaos ends first); returns :attr:`chaos_on`."""
        remaining = min(seconds, self.chaos_ends - time.monotonic())
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drained.wait(), timeout=remaining)
        return self.chaos_on

    async def until(
        self, condition: Callable[[], Awaitable[bool]], *, timeout: float, what: str
    ) -> bool:
        """Poll ``condition`` until it holds (True) or ``timeout`` passes or the chaos ends
        (False; a timeout is counted in :attr:`events` as ``gave up waiting for <what>``)."""
        deadline = time.monotonic() + timeout
        while self.chaos_on and time.monotonic() < deadline:
            if await condition():
                return True
            await asyncio.sleep(POLL / 4)
        if self.chaos_on:
            self.events[f"gave up waiting for {what}"] += 1
        return False

    async def push_jobs(self, work: Sequence[Job]) -> list[int]:
        """Push ``work`` in batches; returns the ids in order."""
        ids: list[int] = []
        for start in range(0, len(work), PUSH_BATCH):
            refs = await self.chancy.push_many("default", work[start : start + PUSH_BATCH])
            ids.extend(ref.id for ref in refs)
        return ids

    def record_jobs(self, count: int, *, first: int = 0) -> list[Job]:
        """``count`` ledger-writing jobs taking ``size.job_seconds`` each."""
        template = Job.from_func(jobs.record, kwargs={"n": 0}, max_attempts=MAX_ATTEMPTS)
        seconds = self.size.job_seconds
        return [
            template.with_kwargs({"n": n, "seconds": seconds}) for n in range(first, first + count)
        ]


class Scenario:
    """A kind of chaos. Subclasses set ``name``, ``title`` and the worker settings,
    and override :meth:`chaos` (and :meth:`push` to push something else than
    ``size.jobs`` plain jobs before the workers start)."""

    name: ClassVar[str]
    title: ClassVar[str]
    settings: ClassVar[WorkerSettings] = WorkerSettings()
    pushes_while_running: ClassVar[bool] = False

    async def push(self, ctx: Context) -> Expectation:
        """Push the jobs; returns what must become of them."""
        return Expectation(succeed=frozenset(await ctx.push_jobs(ctx.record_jobs(ctx.size.jobs))))

    async def chaos(self, ctx: Context) -> None:
        """Break things until :attr:`Context.chaos_on` turns false."""

    async def inspect(self, db: asyncpg.Connection, expected: Expectation) -> dict[str, Any]:
        """Facts particular to this scenario, read once the workers are gone."""
        return {}


async def run_scenario(scenario: Scenario, size: Size, *, seed: int = 7) -> ScenarioRun:
    """Run ``scenario`` at ``size`` on a private server, and check the invariants."""
    began = time.monotonic()
    async with PrivateServer() as server, Chancy(server.url) as chancy:
        settings = dataclasses.replace(scenario.settings, concurrency=size.concurrency)
        fleet = Fleet(server.dsn, server.directory / "logs", settings, seed=seed)
        ctx = Context(server, fleet, Monitor(server), chancy, size, random.Random(seed))
        try:
            drained, expected = await _drive(scenario, ctx)
        finally:
            ctx.drained.set()
            fleet.stop_all()
            await ctx.monitor.close()
            if not server.running:
                await server.start()
        db = await server.connect()
        try:
            invariants = await check_invariants(db, expected, fleet.deaths(), fleet.read_journal())
            poisoners = await _poison_runners(db)
            details = await scenario.inspect(db, expected)
        finally:
            await db.close()
        return ScenarioRun(
            name=scenario.name,
            title=scenario.title,
            size=size,
            seed=seed,
            expected=expected,
            invariants=invariants,
            events=ctx.events,
            logs=fleet.read_logs(),
            details=details,
            exited=frozenset(event.pid for event in fleet.events if event.kind == "exited"),
            clean_stops=fleet.clean_stops(),
            crashes=tuple(
                f"worker {event.pid} exited by itself with code {event.returncode}; its log "
                f"ends: {fleet.tail(event.pid)}"
                for event in fleet.events
                if event.kind == "exited" and event.pid not in poisoners
            ),
            bad_stops=tuple(fleet.bad_stops()),
            drained=drained,
            seconds=time.monotonic() - began,
        )


async def _drive(scenario: Scenario, ctx: Context) -> tuple[bool, Expectation]:
    """Push, start the workers, run the chaos beside the drain; returns whether every
    job finished in time, and what the push expects."""
    pushing = asyncio.create_task(scenario.push(ctx))
    if not scenario.pushes_while_running:
        await pushing
    ctx.fleet.keep(ctx.size.workers)
    ctx.chaos_ends = time.monotonic() + ctx.size.chaos_seconds
    chaos = asyncio.create_task(scenario.chaos(ctx))
    try:
        drained = await _drain(ctx, pushing, chaos)
    finally:
        ctx.drained.set()
        await _finish(chaos)
        await _finish(pushing)
    return drained, pushing.result()


async def _drain(
    ctx: Context, pushing: asyncio.Task[Expectation], chaos: asyncio.Task[None]
) -> bool:
    """Keep the fleet at strength until every job is finished or time is up."""
    deadline = time.monotonic() + ctx.size.drain_seconds
    while time.monotonic() < deadline:
        if chaos.done() and not chaos.cancelled() and (error := chaos.exception()) is not None:
            raise error
        if ctx.server.running:
            ctx.fleet.keep(ctx.size.workers)
        if pushing.done() and await ctx.monitor.unfinished() == 0:
            return True
        await asyncio.sleep(POLL)
    return False


async def _finish(task: asyncio.Task[Any]) -> None:
    """Wait for ``task`` to notice the end of the chaos; cancel it if it does not."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=30)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _poison_runners(db: asyncpg.Connection) -> set[int]:
    """The pids of the workers that ran a job meant to kill its worker."""
    rows = await db.fetch(
        "SELECT DISTINCT l.pid FROM chaos_ledger l JOIN chancy_jobs j ON j.id = l.job_id "
        "WHERE j.func LIKE '%.kill_own_worker'"
    )
    return {row["pid"] for row in rows}
