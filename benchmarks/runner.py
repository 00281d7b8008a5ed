"""``python -m benchmarks``: parse the options, run the scenarios, print the figures.

The exit status is 0 when every selected scenario ran to the end and its counts verified
(a missed target is a figure, not a failure), 1 otherwise, 2 for bad options.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from benchmarks.report import Result, json_line, print_table
from benchmarks.scenarios import SCENARIOS, Context, Scenario
from benchmarks.server import Server, start_server
from benchmarks.workers import ROOT

__all__ = ["main", "parse_arguments"]


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--only`` is checked against the known scenario ids."""
    known = [scenario.id for scenario in SCENARIOS]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="chancy's benchmarks: throughput, latency and memory, against ceilings "
        "measured with plain asyncpg on the same server.",
    )
    parser.add_argument(
        "--dsn",
        help="PostgreSQL server to use (each scenario creates and drops a database on it); "
        "default: a private embedded PostgreSQL in a temporary directory",
    )
    parser.add_argument(
        "--only",
        type=lambda value: [part.strip().upper() for part in value.split(",") if part.strip()],
        default=None,
        help=f"comma-separated scenario ids to run (of {','.join(known)})",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply the job counts (e.g. 0.1 for a quick smoke run)",
    )
    parser.add_argument("--json", action="store_true", help="print only JSON lines")
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not arguments.scale > 0:
        parser.error("--scale must be positive")
    return arguments


def chancy_revision() -> str:
    """chancy's version and the checkout's commit; ``+dirty.<hash>`` when the measured
    code (``chancy/``, ``alembic/``) differs from the commit, the hash naming the diff so
    that a change during the run shows."""
    version = importlib.metadata.version("chancy")

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        diff = git("diff", "HEAD", "--", "chancy", "alembic")
    except (OSError, subprocess.CalledProcessError):
        return version
    dirty = f"+dirty.{hashlib.sha1(diff.encode()).hexdigest()[:7]}" if diff else ""
    return f"{version} ({commit}{dirty})"


def header(server: Server, server_version: str, scale: float) -> dict[str, Any]:
    """What was measured on what: server, machine, chancy."""
    return {
        "id": "header",
        "chancy": chancy_revision(),
        "postgresql": server_version,
        "server": server.describe(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "scale": scale,
    }


def header_line(info: dict[str, Any]) -> str:
    """The header as one line of text."""
    changed = (
        f" [changed during the run, now {info['chancy_at_end']}]" if "chancy_at_end" in info else ""
    )
    return (
        f"chancy {info['chancy']}{changed} · PostgreSQL {info['postgresql']} "
        f"({info['server']}) · {info['cpus']} CPUs · {info['platform']} · "
        f"Python {info['python']} · scale {info['scale']:g}"
    )


async def run_scenario(scenario: Scenario, context: Context) -> Result:
    """Run one scenario; an exception becomes its result's error."""
    result = Result(id=scenario.id, scenario=scenario.name)
    context.say(f"[bold]{scenario.id}[/]: {scenario.name}")
    started = time.monotonic()
    try:
        await scenario.run(context, result)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        result.met = None
    result.seconds = time.monotonic() - started
    if result.error is None:
        context.say(f"{scenario.id} done in {result.seconds:.1f} s: {result.figure_text}")
    else:
        context.say(
            f"[red]{scenario.id} failed after {result.seconds:.1f} s:[/] {escape(result.error)}"
        )
    return result


async def run_all(
    server: Server, selected: Sequence[Scenario], scale: float, console: Console
) -> tuple[dict[str, Any], list[Result]]:
    """The header, then every selected scenario in order."""
    info = header(server, await server.version(), scale)
    context = Context(server=server, scale=scale, console=console)
    for scenario in selected:
        context.results[scenario.id] = await run_scenario(scenario, context)
    return info, list(context.results.values())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    arguments = parse_arguments(argv)
    selected = [s for s in SCENARIOS if arguments.only is None or s.id in arguments.only]
    # Wide enough for the table when stdout is a file or a pipe (rich assumes 80 columns).
    output = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    progress = Console(stderr=True, quiet=arguments.json, log_path=False)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    with start_server(arguments.dsn) as server:
        progress.log(f"PostgreSQL: {server.describe()}", highlight=False)
        info, results = asyncio.run(run_all(server, selected, arguments.scale, progress))
    elapsed = time.monotonic() - started
    at_end = chancy_revision()
    if at_end != info["chancy"]:
        info["chancy_at_end"] = at_end
    if arguments.json:
        print(json_line(info))
    else:
        output.print(header_line(info), soft_wrap=True, markup=False)
        print_table(output, f"chancy benchmarks ({elapsed:.0f} s)", results)
    for result in results:
        print(json_line(result.as_json()))
    sys.stdout.flush()
    return 0 if all(result.error is None for result in results) else 1
