"""The chaos scenarios of issue 7; each runs through :func:`benchmarks.chaos.harness.run_scenario`.

1. :class:`KilledWorkers`: a worker SIGKILLed every 2 s, and another started.
2. :class:`CutConnections`: every LISTEN connection and random worker connections
   terminated with ``pg_terminate_backend`` every second.
3. :class:`DatabaseRestart`: PostgreSQL stopped for 5 s mid-drain, then started again;
   :class:`DatabaseCrash`: PostgreSQL crashed (immediate shutdown) right after claims.
4. :class:`FrozenWorker`: a worker frozen (SIGSTOP) past its lease while it runs long
   jobs, then thawed (SIGCONT): its late outcomes must be turned away by the fence.
5. :class:`RolledBackPushes`: 8 producers push in their own transactions while workers
   are killed; half of them roll back. Exactly the committed jobs run.
6. :class:`PoisonJob`: a job that SIGKILLs its worker every time ends ``failed`` after
   ``max_attempts``, and every other job still succeeds.
7. :class:`HostileJobs` (issue 12): jobs returning or raising what PostgreSQL cannot
   store, calling ``sys.exit``, slow to import, or holding a thread past
   ``shutdown_timeout``, while workers are stopped gracefully; each fails or succeeds as
   it should, no worker dies, no lease lapses, nothing runs twice.
8. :class:`KilledWorkflows` (issue 17): workflows of five steps (a diamond and a tail)
   while workers are SIGKILLed as in 1: every workflow finishes, no step starts before
   its parents succeeded, and no fan-in runs twice at once (the invariants of every
   scenario, which hold for steps as for any job).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from benchmarks.chaos import jobs
from benchmarks.chaos.fleet import Member
from benchmarks.chaos.harness import MAX_ATTEMPTS, POLL, Context, Scenario
from benchmarks.chaos.invariants import Expectation
from benchmarks.chaos.jobs import WORKER_APPLICATION
from chancy.executor import Job
from chancy.workflow import Workflow

__all__ = [
    "SCENARIOS",
    "CutConnections",
    "DatabaseCrash",
    "DatabaseRestart",
    "FrozenWorker",
    "Hostile",
    "HostileJobs",
    "KilledWorkers",
    "KilledWorkflows",
    "PoisonJob",
    "RolledBackPushes",
]


class KilledWorkers(Scenario):
    """Scenario 1: every ``period`` seconds a random worker is SIGKILLed and a new one
    started in its place."""

    name = "killed-workers"
    title = "a worker SIGKILLed every 2 s and restarted"
    period: ClassVar[float] = 2.0

    async def chaos(self, ctx: Context) -> None:
        while await ctx.pause(self.period):
            victim = ctx.fleet.pick()
            if victim is None:
                continue
            held = await _running_on(ctx, victim)
            ctx.fleet.kill(victim)
            ctx.events["workers killed"] += 1
            ctx.events["jobs running in killed workers"] += held or 0
            ctx.fleet.keep(ctx.size.workers)


# A worker's LISTEN connection, as pg_stat_activity shows it: its last statement was the
# LISTEN, or the health check the listener sends every 10 s (chancy/listener.py).
LISTENING = "(query ILIKE 'LISTEN%' OR query = 'SELECT 1')"


class CutConnections(Scenario):
    """Scenario 2: every ``period`` seconds, every worker's LISTEN connection and
    ``others`` random other worker connections are terminated by the server."""

    name = "cut-connections"
    title = "LISTEN and random worker connections terminated every second"
    period: ClassVar[float] = 1.0
    others: ClassVar[int] = 3
    relisten_timeout: ClassVar[float] = 15.0

    async def chaos(self, ctx: Context) -> None:
        while await ctx.pause(self.period):
            backends = await ctx.monitor.fetch(
                f"SELECT pid, {LISTENING} AS listening FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE $1",
                f"{WORKER_APPLICATION}:%",
            )
            if not backends:
                continue
            listening = [row["pid"] for row in backends if row["listening"]]
            others = [row["pid"] for row in backends if not row["listening"]]
            victims = listening + ctx.random.sample(others, min(self.others, len(others)))
            cut = await ctx.monitor.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM unnest($1::int[]) AS pid",
                victims,
            )
            ctx.events["LISTEN connections cut"] += len(listening)
            ctx.events["connections cut"] += int(cut or 0)
        await self._count_listeners_after(ctx)

    async def _count_listeners_after(self, ctx: Context) -> None:
        """Once the cutting stops, wait (up to ``relisten_timeout``) until every worker
        listens again; record how many workers serve, and how many listen."""
        serving = {f"{WORKER_APPLICATION}:{member.pid}" for member in ctx.fleet.serving}
        deadline = time.monotonic() + self.relisten_timeout
        listening: set[str] = set()
        while time.monotonic() < deadline:
            rows = await ctx.monitor.fetch(
                "SELECT DISTINCT application_name FROM pg_stat_activity "
                f"WHERE datname = current_database() AND {LISTENING}"
            )
            listening = {row["application_name"] for row in rows or ()}
            if serving <= listening:
                break
            await asyncio.sleep(POLL)
        ctx.events["workers serving after the cuts"] = len(serving)
        ctx.events["workers listening again after the cuts"] = len(serving & listening)


class DatabaseRestart(Scenario):
    """Scenario 3: once the drain is under way (jobs done and jobs running), PostgreSQL
    is stopped (fast shutdown) for ``down_seconds`` and started again; repeated every
    ``up_seconds`` while the chaos lasts."""

    name = "database-restart"
    title = "PostgreSQL stopped for 5 s mid-drain, then started"
    down_seconds: ClassVar[float] = 5.0
    up_seconds: ClassVar[float] = 15.0

    async def chaos(self, ctx: Context) -> None:
        started = ctx.size.jobs // 10

        async def under_way() -> bool:
            done = await ctx.monitor.fetchval(
                "SELECT count(*) FROM chancy_jobs WHERE state = 'succeeded'"
            )
            return done is not None and done >= started

        if not await ctx.until(under_way, timeout=ctx.size.chaos_seconds, what="the drain"):
            return
        while True:
            running = await ctx.monitor.fetchval(
                "SELECT count(*) FROM chancy_jobs WHERE state = 'running'"
            )
            await ctx.server.stop("fast")
            ctx.events["outages"] += 1
            ctx.events["jobs running when the server stopped"] += int(running or 0)
            await asyncio.sleep(self.down_seconds)  # the outage itself
            await ctx.server.start()
            if not await ctx.pause(self.up_seconds):
                return


class DatabaseCrash(Scenario):
    """Scenario 3, harder: PostgreSQL crashes right after workers claimed jobs.

    In waves while the chaos lasts: ``wave`` jobs that commit nothing while they run
    (they take ``wave_seconds``, then write their ledger row) are pushed to idle workers;
    the moment all of them are claimed, PostgreSQL quits at once (an immediate shutdown,
    as in a crash: what it had not flushed to its WAL is lost, and it recovers from the
    WAL when it starts), and starts again ``down_seconds`` later; the next wave waits
    for this one to finish. Then the rest of ``size.jobs`` is pushed at once. Whatever
    the crash lost, no job may be lost, and no attempt may be run twice under one
    fencing token.
    """

    name = "database-crash"
    title = "PostgreSQL crashed (immediate shutdown) right after claims, started 5 s later"
    pushes_while_running = True
    wave: ClassVar[int] = 20
    wave_seconds: ClassVar[float] = 8.0
    down_seconds: ClassVar[float] = 5.0
    wave_timeout: ClassVar[float] = 60.0

    async def push(self, ctx: Context) -> Expectation:
        """Push the waves, crashing the server after each is claimed, then the rest."""
        ids: list[int] = []
        crashes: list[float] = []
        while ctx.chaos_on and len(ids) + self.wave <= ctx.size.jobs:
            template = Job.from_func(
                jobs.sleep_then_record, kwargs={"n": 0}, max_attempts=MAX_ATTEMPTS
            )
            batch = await ctx.push_jobs(
                [
                    template.with_kwargs({"n": n, "seconds": self.wave_seconds})
                    for n in range(len(ids), len(ids) + self.wave)
                ]
            )
            ids.extend(batch)
            crashed = await self._crash_once_claimed(ctx, batch)
            if crashed is not None:
                crashes.append(crashed)
            await ctx.until(
                functools.partial(_all_in, ctx, batch, ("succeeded",)),
                timeout=self.wave_timeout,
                what="a wave to finish",
            )
        ids.extend(await ctx.push_jobs(ctx.record_jobs(ctx.size.jobs - len(ids), first=len(ids))))
        return Expectation(succeed=frozenset(ids), crashes=tuple(crashes))

    async def _crash_once_claimed(self, ctx: Context, batch: Sequence[int]) -> float | None:
        """Crash the server as soon as every job of ``batch`` is claimed (and every worker
        is up: one still starting would exit, rightly, on a server that is down); returns
        when it crashed (None if the claims did not come)."""

        async def claimed() -> bool:
            ready = all(member.announced() for member in ctx.fleet.serving)
            return ready and await _all_in(ctx, batch, ("running",))

        if not await ctx.until(claimed, timeout=self.wave_timeout, what="a wave's claims"):
            return None
        crashed = time.time()
        await ctx.server.stop("immediate")
        ctx.events["crashes"] += 1
        ctx.events["jobs claimed just before a crash"] += len(batch)
        await asyncio.sleep(self.down_seconds)  # the outage itself
        await ctx.server.start()
        lost = await ctx.monitor.fetchval(
            "SELECT count(*) FROM chancy_jobs WHERE id = ANY($1::bigint[]) "
            "AND state = 'pending' AND attempts = 0",
            list(batch),
        )
        ctx.events["claims the crash undid (seen at restart)"] += int(lost or 0)
        return crashed


class FrozenWorker(Scenario):
    """Scenario 4: a worker that is not the leader, while it runs a long job, is frozen
    (SIGSTOP) until every job it held has been taken over by another worker and its own
    runs would have ended, then thawed (SIGCONT). Its outcomes arrive late, while the
    new attempts still run: the fence must turn them away. Repeated every ``period``.

    One job in ``long_every`` takes ``long_seconds`` (the others ``size.job_seconds``),
    so that a frozen worker holds a run whose new attempt outlasts the freeze."""

    name = "frozen-worker"
    title = "a worker frozen (SIGSTOP) past its lease, then thawed"
    period: ClassVar[float] = 3.0
    long_seconds: ClassVar[float] = 3.0
    freeze_timeout: ClassVar[float] = 60.0

    def __init__(self, *, long_every: int = 5) -> None:
        self.long_every = long_every

    async def push(self, ctx: Context) -> Expectation:
        work = [
            job.with_kwargs({**job.kwargs, "seconds": self.long_seconds})
            if n % self.long_every == 0
            else job
            for n, job in enumerate(ctx.record_jobs(ctx.size.jobs))
        ]
        return Expectation(succeed=frozenset(await ctx.push_jobs(work)))

    async def chaos(self, ctx: Context) -> None:
        while await ctx.pause(self.period):
            victim = await self._victim(ctx)
            if victim is None:
                continue
            held = await _held_runs(ctx, victim) or []
            ctx.fleet.freeze(victim)
            ctx.events["workers frozen"] += 1
            ctx.events["jobs held by frozen workers"] += len(held)
            try:
                await ctx.until(
                    functools.partial(self._taken_over, ctx, held),
                    timeout=self.freeze_timeout,
                    what="the frozen worker's jobs to be taken over",
                )
            finally:
                ctx.fleet.thaw(victim)

    async def _victim(self, ctx: Context) -> Member | None:
        """A serving worker, not the leader, running a long job."""
        found: list[Member] = []

        async def holds_long_run() -> bool:
            leader = await _leader_pid(ctx)
            for member in ctx.fleet.serving:
                if member.pid == leader:
                    continue
                runs = await _held_runs(ctx, member)
                if runs and any(run["seconds"] >= self.long_seconds for run in runs):
                    found.append(member)
                    return True
            return False

        await ctx.until(holds_long_run, timeout=self.freeze_timeout, what="a worker to freeze")
        return found[0] if found else None

    async def _taken_over(self, ctx: Context, held: Sequence[asyncpg.Record]) -> bool:
        """Whether every long run in ``held`` is over (by its own clock) and its job has
        been claimed again by another worker."""
        long_runs = [run for run in held if run["seconds"] >= self.long_seconds]
        if time.time() < max((run["ends"] for run in long_runs), default=0.0):
            return False
        attempts = await ctx.monitor.fetch(
            "SELECT id, attempts FROM chancy_jobs WHERE id = ANY($1::bigint[])",
            [run["id"] for run in long_runs],
        )
        if attempts is None:
            return False
        now = {row["id"]: row["attempts"] for row in attempts}
        return all(now[run["id"]] > run["attempts"] for run in long_runs)


class RolledBackPushes(KilledWorkers):
    """Scenario 5: while workers are killed as in scenario 1, ``producers`` tasks push
    jobs in their own transactions (``push(..., session=...)``), in batches of 1 to
    ``batch_max``; half of the producers roll every transaction back. Exactly the
    committed jobs must exist and run."""

    name = "rolled-back-pushes"
    title = "8 producers pushing in transactions, half rolling back, workers killed"
    pushes_while_running = True
    producers: ClassVar[int] = 8
    batch_max: ClassVar[int] = 10

    async def push(self, ctx: Context) -> Expectation:
        committing = self.producers // 2
        share = ctx.size.jobs // committing
        results = await asyncio.gather(
            *(
                self._produce(ctx, first=k * share, count=share, commit=k < committing)
                for k in range(self.producers)
            )
        )
        committed = [job_id for ok, ids in results if ok for job_id in ids]
        rolled_back = [job_id for ok, ids in results if not ok for job_id in ids]
        ctx.events["jobs pushed and committed"] += len(committed)
        ctx.events["jobs pushed and rolled back"] += len(rolled_back)
        return Expectation(
            succeed=frozenset(committed), never_exist=frozenset(rolled_back) - set(committed)
        )

    async def _produce(
        self, ctx: Context, *, first: int, count: int, commit: bool
    ) -> tuple[bool, list[int]]:
        """Push ``count`` jobs in transactions, spread over most of the chaos time."""
        work = ctx.record_jobs(count, first=first)
        ids: list[int] = []
        transactions = max(1, count * 2 // (self.batch_max + 1))
        pace = ctx.size.chaos_seconds * 0.6 / transactions
        rng = random.Random(ctx.random.random())
        position = 0
        while position < len(work):
            batch = work[position : position + rng.randint(1, self.batch_max)]
            position += len(batch)
            async with AsyncSession(ctx.chancy.engine) as session:
                transaction = await session.begin()
                if len(batch) == 1:
                    ids.append((await ctx.chancy.push("default", batch[0], session=session)).id)
                else:
                    refs = await ctx.chancy.push_many("default", batch, session=session)
                    ids.extend(ref.id for ref in refs)
                await (transaction.commit() if commit else transaction.rollback())
            await asyncio.sleep(pace * rng.uniform(0.5, 1.5))  # pacing, not waiting
        return commit, ids


class PoisonJob(Scenario):
    """Scenario 6: among ``size.jobs`` plain jobs, one job that SIGKILLs the worker
    running it, every time. With ``max_attempts = poison_attempts`` it must end
    ``failed`` after that many runs, each recorded as ``LeaseExpired``; the dead workers
    are replaced, and every other job succeeds."""

    name = "poison-job"
    title = "a job that SIGKILLs its own worker every time"
    poison_attempts: ClassVar[int] = 3

    async def push(self, ctx: Context) -> Expectation:
        poison = Job.from_func(jobs.kill_own_worker, max_attempts=self.poison_attempts)
        work = ctx.record_jobs(ctx.size.jobs)
        middle = len(work) // 10
        ids = await ctx.push_jobs([*work[:middle], poison, *work[middle:]])
        poison_id = ids[middle]
        return Expectation(succeed=frozenset(ids) - {poison_id}, fail=frozenset({poison_id}))

    async def inspect(self, db: asyncpg.Connection, expected: Expectation) -> dict[str, Any]:
        """The poison job's row and runs: ``state``, ``attempts``, the ``errors`` types,
        and the pids that ran it."""
        (poison_id,) = expected.fail
        row = await db.fetchrow(
            "SELECT state, attempts, max_attempts, "
            "  (SELECT array_agg(e->>'type' ORDER BY (e->>'attempt')::int) "
            "   FROM jsonb_array_elements(errors) AS e) AS errors "
            "FROM chancy_jobs WHERE id = $1",
            poison_id,
        )
        assert row is not None, f"the poison job {poison_id} is gone"
        pids = await db.fetch(
            "SELECT pid FROM chaos_ledger WHERE job_id = $1 ORDER BY attempt", poison_id
        )
        return {
            "poison": {
                "state": row["state"],
                "attempts": row["attempts"],
                "max_attempts": row["max_attempts"],
                "errors": list(row["errors"] or []),
                "run_by": [record["pid"] for record in pids],
            }
        }


# The slow module's job, pushed by name: importing it here would take its time.
SLOW_IMPORT_FUNC = "benchmarks.chaos.slow_import.record_after_import"
FINISHED = ("succeeded", "failed", "cancelled")


@dataclasses.dataclass(frozen=True, slots=True)
class Hostile:
    """A kind of hostile job: what it does, the job, and the types of the errors it must
    end with, in order (none: it must succeed)."""

    label: str
    job: Job
    errors: tuple[str, ...] = ()


class HostileJobs(Scenario):
    """Scenario 7: among ``size.jobs`` plain jobs, one in ``hostile_every`` misbehaves,
    each kind in turn (:meth:`kinds`): it returns a NUL, a lone surrogate or a list nested
    too deeply (it fails, ``ResultNotJSON``, never retried); raises an error holding a NUL
    or a lone surrogate, or ``CancelledError`` itself (retried once, then failed, both
    errors stored); calls ``sys.exit`` or raises ``KeyboardInterrupt``, on the worker's
    loop or in a thread (it fails, ``JobExitError``, never retried; its worker runs on);
    lives in a module slower to import than the lease; holds a thread for
    ``hold_seconds``, past ``shutdown_timeout``.

    Meanwhile, every ``period`` seconds, a job holding a thread is pushed first in line,
    and once it runs its worker gets a SIGTERM: the worker must keep its lease, wait for
    the thread, write its outcome and exit 0; another is started at once. Nothing is
    killed, so no lease may lapse and no job may run twice (``Expectation.graceful``).
    """

    name = "hostile-jobs"
    title = (
        "hostile jobs (poison results and errors, sys.exit, slow imports, threads "
        "outliving shutdown_timeout), workers stopped gracefully"
    )
    pushes_while_running = True
    hostile_every: ClassVar[int] = 20
    hold_seconds: ClassVar[float] = 4.0
    period: ClassVar[float] = 2.0
    run_timeout: ClassVar[float] = 30.0

    def __init__(self) -> None:
        self.stops: list[tuple[int, float]] = []

    def kinds(self) -> tuple[Hostile, ...]:
        """The hostile jobs, in the order they take turns."""
        once = MAX_ATTEMPTS  # attempts to spare: these must fail at once all the same
        exit_ = ("JobExitError",)

        def job(fn: Any, max_attempts: int = once, **kwargs: Any) -> Job:
            return Job.from_func(fn, kwargs=kwargs, max_attempts=max_attempts)

        return (
            Hostile("result with a NUL", job(jobs.poison_result, kind="nul"), ("ResultNotJSON",)),
            Hostile(
                "result with a lone surrogate",
                job(jobs.poison_result, kind="surrogate"),
                ("ResultNotJSON",),
            ),
            Hostile(
                "result nested too deeply", job(jobs.poison_result, kind="deep"), ("ResultNotJSON",)
            ),
            Hostile("error with a NUL", job(jobs.raise_poison, 2, kind="nul"), ("ValueError",) * 2),
            Hostile(
                "error with a lone surrogate",
                job(jobs.raise_poison, 2, kind="surrogate"),
                ("ValueError",) * 2,
            ),
            Hostile("CancelledError raised", job(jobs.raise_cancelled, 2), ("CancelledError",) * 2),
            Hostile("sys.exit on the loop", job(jobs.exit_worker, how="exit"), exit_),
            Hostile("KeyboardInterrupt on the loop", job(jobs.exit_worker, how="interrupt"), exit_),
            Hostile("sys.exit in a thread", job(jobs.exit_worker_in_thread, how="exit"), exit_),
            Hostile(
                "KeyboardInterrupt in a thread",
                job(jobs.exit_worker_in_thread, how="interrupt"),
                exit_,
            ),
            Hostile("slow import", Job(func=SLOW_IMPORT_FUNC, kwargs={"n": 0}, max_attempts=once)),
            Hostile("thread past shutdown_timeout", self._holding(0)),
        )

    def _holding(self, n: int, *, priority: int = 0) -> Job:
        return Job.from_func(
            jobs.hold_thread,
            kwargs={"n": n, "seconds": self.hold_seconds},
            max_attempts=MAX_ATTEMPTS,
            priority=priority,
        )

    async def push(self, ctx: Context) -> Expectation:
        """Push the mix, then stop workers running threads until it is done."""
        kinds = self.kinds()
        work: list[Job] = []
        errors: list[tuple[str, ...]] = []
        for n, plain in enumerate(ctx.record_jobs(ctx.size.jobs)):
            if n % self.hostile_every != self.hostile_every - 1:
                work.append(plain)
                errors.append(())
                continue
            kind = kinds[(n // self.hostile_every) % len(kinds)]
            work.append(
                kind.job.with_kwargs({**kind.job.kwargs, "n": n})
                if "n" in kind.job.kwargs
                else kind.job
            )
            errors.append(kind.errors)
            ctx.events[f"hostile: {kind.label}"] += 1
        ids = await ctx.push_jobs(work)
        held = await self._stop_workers_holding_threads(ctx, ids, first=len(work))
        expected = {**dict(zip(ids, errors, strict=True)), **dict.fromkeys(held, ())}
        fail = frozenset(job_id for job_id, wanted in expected.items() if wanted)
        return Expectation(
            succeed=frozenset(expected) - fail, fail=fail, errors=expected, graceful=True
        )

    async def _stop_workers_holding_threads(
        self, ctx: Context, ids: Sequence[int], *, first: int
    ) -> list[int]:
        """Until ``ids`` are finished (or the chaos time is up): push a job holding a
        thread first in line, SIGTERM the worker that runs it, pause. Returns the ids
        pushed."""
        pushed: list[int] = []
        while ctx.chaos_on and not await _all_in(ctx, ids, FINISHED):
            (job_id,) = await ctx.push_jobs([self._holding(first + len(pushed), priority=-1)])
            pushed.append(job_id)
            await self._stop_runner_of(ctx, job_id)
            await ctx.pause(self.period)
        return pushed

    async def _stop_runner_of(self, ctx: Context, job_id: int) -> None:
        """SIGTERM the worker that runs ``job_id``, once its run has begun."""
        runner: list[int] = []

        async def running() -> bool:
            pid = await ctx.monitor.fetchval(
                "SELECT pid FROM chaos_ledger WHERE job_id = $1 LIMIT 1", job_id
            )
            if pid is not None:
                runner.append(int(pid))
            return pid is not None

        if not await ctx.until(running, timeout=self.run_timeout, what="a thread to run"):
            return
        member = next((member for member in ctx.fleet.serving if member.pid == runner[0]), None)
        if member is None:
            ctx.events["threads whose worker was gone already"] += 1
            return
        holding = await ctx.monitor.fetchval(
            "SELECT count(*) FROM chancy_jobs WHERE state = 'running' "
            "AND func LIKE '%.hold_thread' AND split_part(worker_id, ':', 2) = $1 "
            "AND started_at + make_interval(secs => (kwargs->>'seconds')::float8) "
            "  > now() + make_interval(secs => $2)",
            str(member.pid),
            ctx.fleet.settings.shutdown_timeout,
        )
        ctx.fleet.terminate(member)
        self.stops.append((member.pid, time.time()))
        ctx.events["workers stopped gracefully (SIGTERM)"] += 1
        ctx.events["threads outliving shutdown_timeout at a stop"] += int(holding or 0)

    async def inspect(self, db: asyncpg.Connection, expected: Expectation) -> dict[str, Any]:
        """``stopped``: the pids of the workers stopped mid-run; ``waited``: the runs of
        threads that a stopping worker waited for past its ``shutdown_timeout``, and whose
        result it wrote; ``exit runners``: the pids of the
        workers that ran a job trying to exit; ``slow importers``: those that imported
        the slow module."""
        runs = await db.fetch(
            "SELECT l.pid, extract(epoch FROM l.ended_at)::float8 AS ended, j.state, "
            "  (j.result->>'pid')::int AS result_pid "
            "FROM chaos_ledger l JOIN chancy_jobs j ON j.id = l.job_id "
            "WHERE j.func LIKE '%.hold_thread' AND l.ended_at IS NOT NULL"
        )
        timeout = self.settings.shutdown_timeout
        stopped = dict(self.stops)
        waited = [
            run
            for run in runs
            if run["pid"] in stopped
            and run["ended"] > stopped[run["pid"]] + timeout
            and (run["state"], run["result_pid"]) == ("succeeded", run["pid"])
        ]
        return {
            "stopped": sorted(stopped),
            "waited": len(waited),
            "exit runners": await _runners(db, "%.exit_worker%"),
            "slow importers": await _runners(db, "%.record_after_import"),
        }


class KilledWorkflows(KilledWorkers):
    """Scenario 8: ``size.jobs / 5`` workflows, each ``a`` then ``b`` and ``c`` then ``d``
    (their fan-in) then ``e``, of ledger-writing steps, while a worker is SIGKILLed every
    2 s. Besides every scenario's invariants, :meth:`inspect` reports the steps whose
    first run began before one of their parents had succeeded, and the workflows that did
    not succeed."""

    name = "killed-workflows"
    title = "workflows of 5 steps while a worker is SIGKILLed every 2 s"
    shape: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = (
        ("a", ()),
        ("b", ("a",)),
        ("c", ("a",)),
        ("d", ("b", "c")),
        ("e", ("d",)),
    )

    async def push(self, ctx: Context) -> Expectation:
        steps = ctx.record_jobs(ctx.size.jobs - ctx.size.jobs % len(self.shape))
        ids: list[int] = []
        for start in range(0, len(steps), len(self.shape)):
            workflow = Workflow(f"chaos-{start // len(self.shape)}")
            for (name, after), job in zip(self.shape, steps[start:], strict=False):
                workflow = workflow.step(name, job, after=after)
            ref = await ctx.chancy.push_workflow(workflow)
            ids.extend(ref.steps.values())
        return Expectation(succeed=frozenset(ids))

    async def inspect(self, db: asyncpg.Connection, expected: Expectation) -> dict[str, Any]:
        early = await db.fetch(
            """
            SELECT child.id AS child, parent.id AS parent
            FROM chancy_workflow_edges AS edge
            JOIN chancy_jobs AS child ON child.id = edge.child_id
            JOIN chancy_jobs AS parent ON parent.id = edge.parent_id
            WHERE parent.state <> 'succeeded'
               OR (SELECT min(at) FROM chaos_ledger WHERE job_id = child.id)
                  < parent.completed_at
            """
        )
        unfinished = await db.fetchval(
            "SELECT count(DISTINCT workflow_id) FROM chancy_jobs "
            "WHERE workflow_id IS NOT NULL AND state <> 'succeeded'"
        )
        return {
            "workflows": await db.fetchval("SELECT count(*) FROM chancy_workflows"),
            "workflows not succeeded": unfinished,
            "steps begun before a parent succeeded": [tuple(row) for row in early],
        }


SCENARIOS: tuple[type[Scenario], ...] = (
    KilledWorkers,
    CutConnections,
    DatabaseRestart,
    DatabaseCrash,
    FrozenWorker,
    RolledBackPushes,
    PoisonJob,
    HostileJobs,
    KilledWorkflows,
)


async def _runners(db: asyncpg.Connection, func: str) -> list[int]:
    """The pids of the workers that ran a job whose function is like ``func``."""
    rows = await db.fetch(
        "SELECT DISTINCT l.pid FROM chaos_ledger l JOIN chancy_jobs j ON j.id = l.job_id "
        "WHERE j.func LIKE $1 ORDER BY l.pid",
        func,
    )
    return [row["pid"] for row in rows]


async def _running_on(ctx: Context, member: Member) -> int | None:
    runs = await _held_runs(ctx, member)
    return None if runs is None else len(runs)


async def _held_runs(ctx: Context, member: Member) -> list[asyncpg.Record] | None:
    """The jobs ``member`` runs now: id, attempt, and when its run should end."""
    return await ctx.monitor.fetch(
        "SELECT id, attempts, coalesce((kwargs->>'seconds')::float8, 0) AS seconds, "
        "extract(epoch FROM started_at)::float8 "
        "  + coalesce((kwargs->>'seconds')::float8, 0) AS ends "
        "FROM chancy_jobs WHERE state = 'running' AND split_part(worker_id, ':', 2) = $1",
        str(member.pid),
    )


async def _all_in(ctx: Context, ids: Sequence[int], states: Sequence[str]) -> bool:
    """Whether every job of ``ids`` is in one of ``states``."""
    outside = await ctx.monitor.fetchval(
        "SELECT count(*) FROM chancy_jobs WHERE id = ANY($1::bigint[]) "
        "AND NOT state = ANY($2::text[])",
        list(ids),
        list(states),
    )
    return bool(outside == 0)


async def _leader_pid(ctx: Context) -> int | None:
    worker_id = await ctx.monitor.fetchval(
        "SELECT worker_id FROM chancy_leader WHERE expires_at > now()"
    )
    return int(str(worker_id).split(":")[1]) if worker_id else None
