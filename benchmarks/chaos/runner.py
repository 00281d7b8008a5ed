"""``python -m benchmarks.chaos [--minutes N] [--only NAME,...] [--jobs N] [--seed S]``:
the chaos suite of ``tests/chaos`` at full size, with a table of figures per scenario.

Each scenario (see :mod:`benchmarks.chaos.scenarios`, run by :mod:`benchmarks.chaos.harness`)
starts its own private embedded PostgreSQL, pushes ``--jobs`` jobs (10,000 by default),
runs 4 ``chancy worker`` processes, and breaks things for at most ``--minutes`` minutes
(less when the queue is drained first): workers killed, connections cut, the server
restarted, a worker frozen, pushes rolled back, a poison job, hostile jobs while workers
are stopped gracefully. Then it checks the invariants on the rows left behind (no job
lost, the expected errors, no stale write, duplicates only where a worker died, no double
run, nothing stuck; and where workers are only stopped gracefully, no lapsed lease and no
duplicate at all) and prints: jobs pushed, completed, duplicates by cause, stale
writes rejected, and the longest a job waited after its worker died.

The exit status is 0 when every invariant held in every scenario, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.chaos.harness import Scenario, ScenarioRun, Size, run_scenario
from benchmarks.chaos.scenarios import SCENARIOS, FrozenWorker

__all__ = ["main", "parse_arguments", "size_for", "table_of"]

JOBS_DEFAULT = 10_000
MINUTES_DEFAULT = 1.0
# Jobs take long enough for the drain to last about as long as the chaos (the workers'
# 40 slots kept full), and no less than this.
JOB_SECONDS_MIN = 0.05
JOB_SECONDS_MAX = 5.0
DRAIN_SHARE = 0.8
# At full size, one job in this many takes FrozenWorker.long_seconds (enough for every
# frozen worker to hold one, few enough for the drain to stay short).
LONG_EVERY_FULL = 50
SEED_DEFAULT = 7


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--only`` is checked against the scenarios' names."""
    known = [scenario.name for scenario in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos",
        description="Kill workers, cut connections, restart the database, and lose nothing.",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=MINUTES_DEFAULT,
        help="at most this much chaos per scenario (it stops early once the queue drains)",
    )
    parser.add_argument(
        "--only",
        type=lambda value: [part.strip() for part in value.split(",") if part.strip()],
        default=None,
        help=f"comma-separated scenarios to run (of {','.join(known)})",
    )
    parser.add_argument("--jobs", type=int, default=JOBS_DEFAULT, help="jobs per scenario")
    parser.add_argument("--seed", type=int, default=SEED_DEFAULT, help="seed of the chaos")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not arguments.minutes > 0 or arguments.jobs < 10:
        parser.error("--minutes must be positive and --jobs at least 10")
    return arguments


def size_for(minutes: float, jobs: int) -> Size:
    """The size of each scenario: ``jobs`` jobs, chaos for ``minutes``, jobs long enough
    for the drain to last about that long, and time enough to drain after the chaos."""
    chaos = minutes * 60
    slots = Size(jobs=jobs, chaos_seconds=chaos)
    seconds = DRAIN_SHARE * chaos * slots.workers * slots.concurrency / jobs
    return dataclasses.replace(
        slots,
        job_seconds=min(max(seconds, JOB_SECONDS_MIN), JOB_SECONDS_MAX),
        drain_seconds=2 * chaos + max(300.0, jobs / 20),
    )


def scenario_of(kind: type[Scenario], jobs: int) -> Scenario:
    """``kind`` set up for ``jobs`` jobs."""
    if kind is FrozenWorker:
        return FrozenWorker(long_every=LONG_EVERY_FULL if jobs >= 5_000 else 5)
    return kind()


def table_of(number: int, run: ScenarioRun) -> Table:
    """The figures of one run, and whether each invariant held."""
    table = Table(title=f"{number}. {escape(run.title)}", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    invariants = run.invariants
    pushed = f"{len(run.expected.pushed):,}"
    if run.expected.never_exist:
        pushed += f" (+{len(run.expected.never_exist):,} rolled back)"
    table.add_row("jobs pushed", pushed)
    completed = f"{invariants.succeeded:,} succeeded"
    if run.expected.fail:
        completed += f", {invariants.failed:,} failed as meant"
    table.add_row("completed", completed)
    for error, count in sorted(invariants.failed_by_error.items()):
        table.add_row(f"  failed with {escape(error)}", f"{count:,}")
    if invariants.failed_runs:
        table.add_row("runs whose attempt failed by itself", f"{invariants.failed_runs:,}")
    table.add_row("duplicate runs", f"{invariants.duplicates:,}")
    for cause, count in invariants.interrupted_runs.most_common():
        table.add_row(f"  {escape(cause)}", f"{count:,}")
    table.add_row("stale writes rejected", f"{run.stale_rejected:,}")
    wait = invariants.max_wait_after_death
    table.add_row("max wait after a worker died", "-" if wait is None else f"{wait:.1f} s")
    for event, count in sorted(run.events.items()):
        table.add_row(f"chaos: {escape(event)}", f"{count:,}")
    table.add_row("drained in", f"{run.seconds:.0f} s" if run.drained else "NOT drained")
    verdict = _verdict(run)
    table.add_row("invariants", "all hold" if not verdict else f"[red]{escape(verdict)}[/red]")
    return table


def _verdict(run: ScenarioRun) -> str:
    """The failed invariants and worker faults, counted; empty when all is well."""
    faults = {name: len(found) for name, found in run.invariants.violations.items()}
    if run.crashes:
        faults["crashed workers"] = len(run.crashes)
    if run.bad_stops:
        faults["bad stops"] = len(run.bad_stops)
    return ", ".join(f"{name}: {count}" for name, count in faults.items())


def _evidence(run: ScenarioRun, limit: int = 5) -> str:
    """The first pieces of evidence of each violation, crash and bad stop."""
    lines = [run.invariants.explain(limit)]
    lines += [f"crash: {crash}" for crash in run.crashes[:limit]]
    lines += [f"bad stop: {stop}" for stop in run.bad_stops[:limit]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios one after the other, printing a table after each."""
    arguments = parse_arguments(argv)
    console = Console()
    size = size_for(arguments.minutes, arguments.jobs)
    selected = [kind for kind in SCENARIOS if kind.name in (arguments.only or [kind.name])]
    console.print(
        f"chaos: {len(selected)} scenarios, {size.jobs:,} jobs of {size.job_seconds:.2f} s "
        f"each, {size.workers} workers x {size.concurrency} slots, up to "
        f"{size.chaos_seconds:.0f} s of chaos each, seed {arguments.seed}"
    )
    failed = 0
    for number, kind in enumerate(SCENARIOS, start=1):
        if kind not in selected:
            continue
        run = asyncio.run(run_scenario(scenario_of(kind, size.jobs), size, seed=arguments.seed))
        console.print(table_of(number, run))
        if _verdict(run):
            failed += 1
            console.print(escape(_evidence(run)), soft_wrap=True)
    console.print("every invariant held" if not failed else f"[red]{failed} scenario(s) failed")
    return 1 if failed else 0
