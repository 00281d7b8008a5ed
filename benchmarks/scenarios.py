"""The scenarios: each runs on a fresh database and fills in one :class:`Result`.

Every count is checked in the database afterwards; a count that does not match raises
:class:`~benchmarks.workers.VerificationError`, which the runner reports as the
scenario's error. A missed target is only a figure.

=====  =====================================================================  ==========
id     what                                                                   target
=====  =====================================================================  ==========
S1     5,000 ``push`` calls, one job and one transaction each                 ≥ 0.75
S2     50,000 jobs through ``push_many``, 1,000 per call                      ≥ 0.50
S3     one worker process (concurrency 10) drains 20,000 no-op jobs          ≥ 0.35
S4     idle worker; 200 pushes 20 ms apart; push-to-start latency             p50 ≤ 3 ms,
                                                                              p99 ≤ 15 ms
S5     claim of 10 among 10,000 ready jobs, then beside 2,000,000 others      ≤ 1.5
S6     four worker processes drain 50,000 jobs (CPU of workers and server)    ≥ 1.6x S3
S7     16 producers push single jobs: 16 tasks in one process, then 4         ≥ 0.60 of
       processes x 4 (:mod:`benchmarks.producers`), against pgbench           pgbench
W1     one worker process drains 1,000 workflows of 10 no-op steps          reported
       (a root, 8 branches, a fan-in), as S3 drains plain jobs                ÷ S3
M1     one worker drains 1,000,000 jobs; its RSS at start, half-way, end      ≤ 20 MiB or
                                                                              ≤ 10 %
D1     the dashboard's overview and first pages of ``/jobs`` (all, failed)    each ≤ 1 s
       with 2,000,000 jobs in the table (:mod:`benchmarks.web`)
=====  =====================================================================  ==========

``--scale`` multiplies the job counts (each has a floor, so a small scale still measures
something); the number of S5 claims is not scaled.

With ``--peers``, S1 to S4 and S7 also run on the peer libraries of
:mod:`benchmarks.peers`, each scenario's peer run right after chancy's.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks import ceilings, tasks
from benchmarks.context import (
    NOOP,
    PENDING_COUNT,
    PUSH_CHUNK,
    WARM_UP_PUSHES,
    WORKER_CONCURRENCY,
    Context,
    Latencies,
    Scenario,
    drain_timeout,
    expect_count,
    fill_throughput,
    measure_latency,
    percentile,
    prepush,
)
from benchmarks.cpu import CpuMeter, find_postmaster
from benchmarks.producers import sixteen_producers
from benchmarks.report import Result, fmt_rate
from benchmarks.server import Database
from benchmarks.web import dashboard_pages
from benchmarks.workers import (
    VerificationError,
    drain_timings,
    wait_drained,
    worker_processes,
)
from chancy.repository import ClaimRepository
from chancy.workflow import Workflow

__all__ = ["SCENARIOS"]

MIB = 1024 * 1024

# S1 ------------------------------------------------------------------------------------


async def push_one_at_a_time(context: Context, result: Result) -> None:
    """S1: ``await chancy.push(queue, job)``, one call and one transaction per job,
    against single-row autocommit INSERTs into a plain table."""
    count = context.scaled(5_000, 100)
    result.target = "ratio ≥ 0.75"
    async with context.server.fresh_database("S1") as database:
        async with database.chancy() as chancy:
            for _ in range(WARM_UP_PUSHES):
                await chancy.push(tasks.WARM_UP_QUEUE, NOOP)
            started = time.perf_counter()
            for _ in range(count):
                await chancy.push(tasks.QUEUE, NOOP)
            ours = count / (time.perf_counter() - started)
        connection = await database.connect()
        try:
            await expect_count(
                connection, "pending jobs", PENDING_COUNT, tasks.QUEUE, expected=count
            )
            await ceilings.create_plain_table(connection)
            ceiling = count / await ceilings.single_inserts(connection, count)
            await expect_count(
                connection,
                "plain rows",
                f"SELECT count(*) FROM {ceilings.PLAIN_TABLE}",
                expected=count,
            )
        finally:
            await connection.close()
    fill_throughput(result, ours, ceiling, minimum_ratio=0.75)
    result.extra["jobs"] = count
    if context.peers:
        from benchmarks.peers import compare, pgqueuer

        await compare(
            result,
            pgqueuer.label(),
            lambda figure: pgqueuer.push_one_at_a_time(context, figure, count),
            minimum_factor=1.5,
        )


# S2 ------------------------------------------------------------------------------------

CEILING_BATCH = 100


async def push_in_batches(context: Context, result: Result) -> None:
    """S2: ``push_many`` with 1,000 jobs per call, against 100-row INSERTs (``unnest``),
    each committed, into the plain table."""
    count = context.scaled(50_000, 1_000)
    result.target = "ratio ≥ 0.50"
    async with context.server.fresh_database("S2") as database:
        async with database.chancy() as chancy:
            await chancy.push_many(tasks.WARM_UP_QUEUE, [NOOP] * PUSH_CHUNK)
            started = time.perf_counter()
            for start in range(0, count, PUSH_CHUNK):
                await chancy.push_many(tasks.QUEUE, [NOOP] * min(PUSH_CHUNK, count - start))
            ours = count / (time.perf_counter() - started)
        connection = await database.connect()
        try:
            await expect_count(
                connection, "pending jobs", PENDING_COUNT, tasks.QUEUE, expected=count
            )
            await ceilings.create_plain_table(connection)
            ceiling = count / await ceilings.batched_inserts(connection, count, CEILING_BATCH)
            await expect_count(
                connection,
                "plain rows",
                f"SELECT count(*) FROM {ceilings.PLAIN_TABLE}",
                expected=count,
            )
        finally:
            await connection.close()
    fill_throughput(result, ours, ceiling, minimum_ratio=0.50)
    result.figure_text += f" ({PUSH_CHUNK:,}/call)"
    result.ceiling_text += f" ({CEILING_BATCH}/INSERT)"
    result.extra.update(jobs=count, chunk=PUSH_CHUNK, ceiling_batch=CEILING_BATCH)
    result.notes.append(
        f"push_many sends {PUSH_CHUNK:,} jobs per call (one transaction each); the ceiling "
        f"commits every {CEILING_BATCH} rows, so it pays {PUSH_CHUNK // CEILING_BATCH}x "
        "the commits"
    )
    if context.peers:
        from benchmarks.peers import compare, pgqueuer

        await compare(
            result,
            pgqueuer.label(),
            lambda figure: pgqueuer.push_in_batches(context, figure, count),
            minimum_factor=2.0,
        )


# S3 and S6 -----------------------------------------------------------------------------


async def drain_with_workers(
    context: Context,
    result: Result,
    *,
    count: int,
    workers: int,
    label: str,
    push: Callable[[Database, int, Context], Awaitable[int]] | None = None,
) -> tuple[float, float]:
    """Pre-push ``count`` jobs (with ``push``, returning the first id; default: no-op
    jobs), start ``workers`` worker processes, wait until the queue is empty; returns
    (jobs/s by the database's clock, wall seconds from process start).

    The CPU time the workers, the server and the machine used while the jobs ran (from
    the first job seen done to the empty queue) goes into the result's notes and JSON."""
    async with context.server.fresh_database(label) as database:
        context.say(f"{label}: pushing {count:,} jobs")
        if push is None:
            first_id = await prepush(database, count, context=context)
        else:
            first_id = await push(database, count, context)
        connection = await database.connect()
        postmaster = await find_postmaster(database.dsn)
        try:
            context.say(f"{label}: {workers} worker process(es) draining")
            started = time.monotonic()
            with worker_processes(
                database.dsn, workers, concurrency=WORKER_CONCURRENCY
            ) as processes:
                meter = CpuMeter([psutil.Process(process.pid) for process in processes], postmaster)
                samples = [meter.sample()]

                def on_progress(done: int) -> None:
                    if done > 0 and len(samples) == 1:
                        samples.append(meter.sample())

                finished = await wait_drained(
                    connection,
                    processes,
                    first_id=first_id,
                    count=count,
                    timeout=drain_timeout(count),
                    poll=0.05,
                    on_progress=on_progress,
                )
                usage = CpuMeter.usage(samples[-1], meter.sample())
                for process in processes:
                    result.notes.extend(process.log_problems())
            timings = await drain_timings(connection, count)
        finally:
            await connection.close()
    wall = finished - started
    result.extra.update(
        jobs=count,
        workers=workers,
        concurrency=WORKER_CONCURRENCY,
        drain_s=timings.seconds,
        wall_s=wall,
        **usage.as_extra(),
    )
    result.notes.append(usage.describe())
    if postmaster is None:
        result.notes.append(
            "the server's CPU is not measured: its processes are not on this machine"
        )
    return timings.jobs_per_second(), wall


async def one_worker_drains(context: Context, result: Result) -> None:
    """S3: one worker process drains pre-pushed jobs, against a plain-asyncpg loop of
    claim-100 / complete-100 transactions on a copy of the same jobs."""
    count = context.scaled(20_000, 500)
    result.target = "ratio ≥ 0.35"
    ours, wall = await drain_with_workers(context, result, count=count, workers=1, label="S3")
    async with context.server.fresh_database("S3c") as database:
        await prepush(database, count)
        connection = await database.connect()
        try:
            context.say("S3: ceiling (claim 100 / complete 100 on one connection)")
            processed = await ceilings.claim_and_complete(connection, tasks.QUEUE, 100)
            if processed != count:
                raise VerificationError(f"ceiling processed {processed} jobs, not {count}")
            ceiling = (await drain_timings(connection, count)).jobs_per_second()
        finally:
            await connection.close()
    fill_throughput(result, ours, ceiling, minimum_ratio=0.35)
    result.notes.append(
        f"drain {result.extra['drain_s']:.2f} s by the database's clock (first started_at "
        f"to last completed_at); wall {wall:.2f} s from process start "
        f"({count / wall:,.0f} jobs/s)"
    )
    if context.peers:
        from benchmarks.peers import compare, pgqueuer

        await compare(
            result,
            pgqueuer.label(pgqueuer.LIKE_CHANCY.name),
            lambda figure: pgqueuer.drain(context, figure, count, pgqueuer.LIKE_CHANCY),
        )
        await compare(
            result,
            pgqueuer.label(pgqueuer.DEFAULTS.name),
            lambda figure: pgqueuer.drain(context, figure, count, pgqueuer.DEFAULTS),
            minimum_factor=2.0,
        )


async def four_workers_drain(context: Context, result: Result) -> None:
    """S6: four worker processes drain pre-pushed jobs together; compared with S3."""
    count = context.scaled(50_000, 1_000)
    result.target = "≥ 1.6x S3"
    ours, wall = await drain_with_workers(context, result, count=count, workers=4, label="S6")
    result.figure, result.unit, result.figure_text = ours, "jobs/s", fmt_rate(ours)
    result.notes.append(
        f"drain {result.extra['drain_s']:.2f} s by the database's clock; wall {wall:.2f} s "
        f"from process start; 4 workers x concurrency {WORKER_CONCURRENCY} on "
        f"{psutil.cpu_count()} CPUs shared with the server"
    )
    against_s3(context, result, ours)
    if result.ratio is not None:
        result.met = result.ratio >= 1.6


def against_s3(context: Context, result: Result, ours: float) -> None:
    """Compare ``ours`` (jobs/s) with S3's figure of this run, as the result's ceiling and
    ratio (S3 must run first, as ``--only S3,...`` keeps it)."""
    single = context.results.get("S3")
    if single is None or single.error is not None or single.figure is None:
        result.ceiling_text = "run with S3"
        return
    result.ceiling, result.ceiling_text = single.figure, f"S3: {fmt_rate(single.figure)}"
    result.ratio = ours / single.figure


# W1 ------------------------------------------------------------------------------------

WORKFLOW_BRANCHES = 8


def fan_workflow(index: int) -> Workflow:
    """A workflow of 10 no-op steps: a root, 8 branches after it, and their fan-in."""
    job = NOOP.with_queue(tasks.QUEUE)
    workflow = Workflow(f"w{index}").step("root", job)
    branches = [f"branch-{i}" for i in range(WORKFLOW_BRANCHES)]
    for name in branches:
        workflow = workflow.step(name, job, after=["root"])
    return workflow.step("join", job, after=branches)


async def push_workflows(database: Database, count: int, context: Context) -> tuple[int, float]:
    """Push ``count`` jobs as workflows of 10 steps, one ``push_workflow`` each; returns
    the first job's id and the workflows pushed per second."""
    first_id: int | None = None
    workflows = count // (WORKFLOW_BRANCHES + 2)
    async with database.chancy() as chancy:
        started = time.perf_counter()
        for index in range(workflows):
            ref = await chancy.push_workflow(fan_workflow(index))
            first_id = min(ref.steps.values()) if first_id is None else first_id
        seconds = time.perf_counter() - started
    context.say(
        f"  pushed {workflows:,} workflows in {seconds:.2f} s "
        f"({workflows / seconds:,.0f} workflows/s, {count / seconds:,.0f} steps/s)"
    )
    assert first_id is not None
    return first_id, workflows / seconds


async def one_worker_drains_workflows(context: Context, result: Result) -> None:
    """W1: 1,000 workflows of 10 no-op steps (a root, 8 branches, a fan-in) drained by
    one worker process, as S3 drains plain jobs; compared with S3's figure."""
    count = context.scaled(1_000, 10) * (WORKFLOW_BRANCHES + 2)
    result.target = "reported against S3"
    rates: list[float] = []

    async def push(database: Database, count: int, context: Context) -> int:
        first_id, rate = await push_workflows(database, count, context)
        rates.append(rate)
        return first_id

    ours, wall = await drain_with_workers(
        context, result, count=count, workers=1, label="W1", push=push
    )
    result.figure, result.unit, result.figure_text = ours, "jobs/s", fmt_rate(ours)
    (pushed,) = rates
    result.extra["pushed_workflows_per_s"] = round(pushed, 1)
    result.notes.append(
        f"{count // (WORKFLOW_BRANCHES + 2):,} workflows, {count:,} steps, pushed one "
        f"push_workflow call each at {pushed:,.0f} workflows/s; drain "
        f"{result.extra['drain_s']:.2f} s by the database's clock; wall {wall:.2f} s"
    )
    against_s3(context, result, ours)


# S4 ------------------------------------------------------------------------------------

FINISHED_COUNT = (
    "SELECT count(*) FROM chancy_jobs WHERE id = ANY($1::bigint[]) "
    "AND state IN ('succeeded', 'failed', 'cancelled')"
)


async def push_to_start_latency(context: Context, result: Result) -> None:
    """S4: an idle worker; jobs pushed 20 ms apart; ``started_at - created_at`` of each,
    both by the database's clock."""
    count = context.scaled(200, 20)
    result.target = "p50 ≤ 3 ms, p99 ≤ 15 ms"
    async with context.server.fresh_database("S4") as database:
        connection = await database.connect()
        try:
            async with database.chancy() as chancy:

                async def push() -> int:
                    return (await chancy.push(tasks.QUEUE, NOOP)).id

                with worker_processes(database.dsn, 1, concurrency=WORKER_CONCURRENCY) as workers:
                    context.say("S4: waiting for the worker to run warm-up jobs")
                    ids, push_ms = await measure_latency(
                        context,
                        connection,
                        push,
                        count=count,
                        finished=FINISHED_COUNT,
                        workers=workers,
                        what="jobs",
                    )
                    result.notes.extend(workers[0].log_problems())
            await expect_count(
                connection,
                "succeeded jobs",
                "SELECT count(*) FROM chancy_jobs WHERE id = ANY($1::bigint[]) "
                "AND state = 'succeeded'",
                ids,
                expected=count,
            )
            rows = await connection.fetch(
                "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS ms "
                "FROM chancy_jobs WHERE id = ANY($1::bigint[])",
                ids,
            )
        finally:
            await connection.close()
    latencies = Latencies.of([float(row["ms"]) for row in rows])
    result.figure, result.unit = latencies.p50, "ms"
    result.met = latencies.p50 <= 3.0 and latencies.p99 <= 15.0
    result.figure_text = latencies.text
    push_p50 = statistics.median(push_ms)
    result.extra.update(**latencies.as_extra(), jobs=count, push_call_p50_ms=push_p50)
    result.notes.append(
        "latency = started_at - created_at (database clock; created_at is the push "
        "transaction's start, so the push's own commit is included); a push call took "
        f"{push_p50:.1f} ms (median, client side)"
    )
    if context.peers:
        from benchmarks.peers import compare, pgqueuer

        await compare(
            result, pgqueuer.label(), lambda figure: pgqueuer.latency(context, figure, count)
        )


# S5 ------------------------------------------------------------------------------------

CLAIMS = 200
CLAIM_LIMIT = 10
CLAIM_WARM_UP = 10
CLAIM_WORKER_ID = "bench-s5"

BULK_FINISHED = """
INSERT INTO chancy_jobs (queue, func, state, attempts, scheduled_at, started_at, completed_at)
SELECT $1, 'benchmarks.tasks.noop', 'succeeded', 1, now(), now(), now()
  FROM generate_series(1, $2::int)
"""
BULK_FUTURE = """
INSERT INTO chancy_jobs (queue, func, state, scheduled_at)
SELECT $1, 'benchmarks.tasks.noop', 'scheduled', now() + interval '1 day'
  FROM generate_series(1, $2::int)
"""


async def time_claims(engine: AsyncEngine, claims: int) -> list[float]:
    """Milliseconds of each of ``claims`` calls of ``ClaimRepository.claim_available`` (10
    jobs), each in its own transaction, rolled back so the ready set stays the same.
    Only the claim statement is timed: the transaction is opened by a ``SELECT 1``."""
    repository = ClaimRepository()
    times: list[float] = []
    async with engine.connect() as connection:
        for index in range(CLAIM_WARM_UP + claims):
            async with connection.begin() as transaction:
                await connection.exec_driver_sql("SELECT 1")
                started = time.perf_counter()
                claimed = await repository.claim_available(
                    connection, tasks.QUEUE, CLAIM_LIMIT, CLAIM_WORKER_ID
                )
                elapsed = (time.perf_counter() - started) * 1000
                await transaction.rollback()
            if len(claimed) != CLAIM_LIMIT:
                raise VerificationError(f"a claim returned {len(claimed)} jobs, not {CLAIM_LIMIT}")
            if index >= CLAIM_WARM_UP:
                times.append(elapsed)
    return times


async def explain_claim(engine: AsyncEngine) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of chancy's own claim statement (captured as chancy
    sends it, with its parameters), rolled back; summarised in one line."""
    captured: list[tuple[str, Any]] = []

    def capture(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, _many: bool
    ) -> None:
        if "SKIP LOCKED" in statement and statement.lstrip().upper().startswith(("WITH", "UPDATE")):
            captured.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with engine.connect() as connection, connection.begin() as transaction:
            await ClaimRepository().claim_available(
                connection, tasks.QUEUE, CLAIM_LIMIT, CLAIM_WORKER_ID
            )
            await transaction.rollback()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    if not captured:
        return "(the claim statement was not captured)"
    statement, parameters = captured[-1]
    async with engine.connect() as connection, connection.begin() as transaction:
        result = await connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters
        )
        plan = result.scalar_one()
        await transaction.rollback()
    return summarize_plan(json.loads(plan) if isinstance(plan, str) else plan)


def summarize_plan(plan: list[dict[str, Any]]) -> str:
    """One line: each scan (node, index, rows x loops, rows filtered out), the buffers of
    the whole statement, and its execution time."""
    top = plan[0]
    root = top["Plan"]
    scans: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = str(node["Node Type"])
        if kind.endswith("Scan") and kind != "CTE Scan":
            where = node.get("Index Name") or node.get("Relation Name") or "?"
            rows = f"{node.get('Actual Rows', 0):g} rows x {node.get('Actual Loops', 0)}"
            removed = int(node.get("Rows Removed by Filter", 0)) + int(
                node.get("Rows Removed by Index Recheck", 0)
            )
            scans.append(f"{kind} {where}: {rows}" + (f" ({removed} filtered)" if removed else ""))
        for child in node.get("Plans", ()):
            walk(child)

    walk(root)
    buffers = ", ".join(
        f"{name}={root.get(f'Shared {name.capitalize()} Blocks', 0)}"
        for name in ("hit", "read", "dirtied")
    )
    return (
        f"{'; '.join(scans)}; shared buffers {buffers}; "
        f"execution {float(top['Execution Time']):.3f} ms"
    )


async def claim_latency(context: Context, result: Result) -> None:
    """S5: median claim among ready jobs alone, then with finished and future-scheduled
    rows in the same queue (bulk-inserted); the ratio of the two medians."""
    ready = context.scaled(10_000, 1_000)
    others = context.scaled(1_000_000, 10_000)
    result.target = "ratio ≤ 1.5"
    async with context.server.fresh_database("S5") as database:
        await prepush(database, ready)
        connection = await database.connect()
        try:
            async with database.chancy() as chancy:
                await connection.execute("VACUUM (ANALYZE) chancy_jobs")
                alone = await time_claims(chancy.engine, CLAIMS)
                plan_alone = await explain_claim(chancy.engine)
                context.say(f"S5: inserting {others:,} succeeded and {others:,} scheduled rows")
                await connection.execute(BULK_FINISHED, tasks.QUEUE, others)
                await connection.execute(BULK_FUTURE, tasks.QUEUE, others)
                await connection.execute("VACUUM (ANALYZE) chancy_jobs")
                loaded = await time_claims(chancy.engine, CLAIMS)
                plan_loaded = await explain_claim(chancy.engine)
            rows = await connection.fetch(
                "SELECT state, count(*) AS n FROM chancy_jobs WHERE queue = $1 GROUP BY state",
                tasks.QUEUE,
            )
        finally:
            await connection.close()
    counts = {row["state"]: int(row["n"]) for row in rows}
    expected = {"pending": ready, "succeeded": others, "scheduled": others}
    if counts != expected:
        raise VerificationError(f"expected {expected} jobs by state, found {counts}")
    median_alone, median_loaded = statistics.median(alone), statistics.median(loaded)
    result.figure, result.unit, result.ceiling = median_loaded, "ms", median_alone
    result.ratio = median_loaded / median_alone
    result.met = result.ratio <= 1.5
    result.figure_text = f"{median_loaded:.2f} ms with {2 * others:,} others"
    result.ceiling_text = f"{median_alone:.2f} ms alone"
    result.extra.update(
        ready=ready,
        succeeded_rows=others,
        scheduled_rows=others,
        claims=CLAIMS,
        claim_limit=CLAIM_LIMIT,
        median_alone_ms=median_alone,
        median_loaded_ms=median_loaded,
        p95_alone_ms=percentile(alone, 95),
        p95_loaded_ms=percentile(loaded, 95),
        plan_alone=plan_alone,
        plan_loaded=plan_loaded,
    )
    result.notes.append(
        f"{CLAIMS} claims of {CLAIM_LIMIT} via ClaimRepository.claim_available, each rolled "
        f"back (the ready set stays {ready:,}); VACUUM ANALYZE before each series"
    )
    result.notes.append(f"plan alone: {plan_alone}")
    result.notes.append(f"plan with {2 * others:,} others: {plan_loaded}")


# M1 ------------------------------------------------------------------------------------

MEMORY_PUSH_CHUNK = 5_000


async def memory_over_a_long_drain(context: Context, result: Result) -> None:
    """M1: one worker drains many jobs; its RSS after warm-up, half-way and at the end."""
    count = context.scaled(1_000_000, 10_000)
    warm_up = max(count // 100, 1_000)
    result.target = "growth ≤ 20 MiB or ≤ 10 %"
    samples: dict[str, float] = {}
    async with context.server.fresh_database("M1") as database:
        context.say(f"M1: pushing {count:,} jobs")
        first_id = await prepush(database, count, chunk=MEMORY_PUSH_CHUNK, context=context)
        connection = await database.connect()
        try:
            with worker_processes(database.dsn, 1, concurrency=WORKER_CONCURRENCY) as workers:
                process = psutil.Process(workers[0].pid)
                context.say(f"M1: one worker draining {count:,} jobs")
                reported = 0

                def on_progress(done: int) -> None:
                    nonlocal reported
                    rss = process.memory_info().rss / MIB
                    samples["peak"] = max(samples.get("peak", 0.0), rss)
                    if "start" not in samples and done >= warm_up:
                        samples["start"] = process.memory_info().rss / MIB
                    if "half" not in samples and done >= count // 2:
                        samples["half"] = process.memory_info().rss / MIB
                    if done >= reported + count // 10:
                        reported = done - done % (count // 10)
                        context.say(f"  M1: ~{done:,} done, RSS {rss:.1f} MiB")

                await wait_drained(
                    connection,
                    workers,
                    first_id=first_id,
                    count=count,
                    timeout=drain_timeout(count),
                    poll=0.2,
                    on_progress=on_progress,
                )
                samples["end"] = process.memory_info().rss / MIB
                result.notes.extend(workers[0].log_problems())
            timings = await drain_timings(connection, count)
        finally:
            await connection.close()
    if "start" not in samples or "half" not in samples:
        raise VerificationError(f"the drain was too quick to sample the RSS ({samples})")
    start, half, end = samples["start"], samples["half"], samples["end"]
    growth = end - start
    result.figure, result.unit, result.ratio = growth, "MiB", end / start
    result.met = growth <= 20.0 or growth <= 0.10 * start
    result.figure_text = f"{start:.1f} → {half:.1f} → {end:.1f} MiB ({growth:+.1f} MiB)"
    result.extra.update(
        jobs=count,
        rss_start_mib=start,
        rss_half_mib=half,
        rss_end_mib=end,
        rss_peak_mib=max(samples["peak"], end),
        growth_mib=growth,
        growth_pct=100 * growth / start,
        jobs_per_s=timings.jobs_per_second(),
        drain_s=timings.seconds,
    )
    result.notes.append(
        f"RSS after {warm_up:,} jobs, at ~{count // 2:,} and at the end (peak seen "
        f"{max(samples['peak'], end):.1f} MiB); ratio = end / start; drained at "
        f"{fmt_rate(timings.jobs_per_second())} ({timings.seconds:.1f} s)"
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("S1", "push, one job per call", push_one_at_a_time),
    Scenario("S2", "push_many, 1,000 per call", push_in_batches),
    Scenario("S3", "1 worker drains (concurrency 10)", one_worker_drains),
    Scenario("S4", "push-to-start latency, idle worker", push_to_start_latency),
    Scenario("S5", "claim latency beside finished/future rows", claim_latency),
    Scenario("S6", "4 workers drain", four_workers_drain),
    Scenario("S7", "16 producers push 1 job per call", sixteen_producers),
    Scenario("W1", "1 worker drains 1,000 workflows of 10 steps", one_worker_drains_workflows),
    Scenario("M1", "worker RSS over a long drain", memory_over_a_long_drain),
    Scenario("D1", "dashboard pages on a large jobs table", dashboard_pages),
)
