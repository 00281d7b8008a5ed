"""``python -m benchmarks``: parse the options, run the scenarios, print the figures.

The exit status is 0 when every selected scenario (and, with ``--peers``, every peer's run
of it) ran to the end and its counts verified (a missed target is a figure, not a
failure), 1 otherwise, 2 for bad options (``--peers`` without the peers installed too).
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

from benchmarks import peers
from benchmarks.context import Context, Scenario
from benchmarks.report import Result, json_line, markdown_table, print_table
from benchmarks.scenarios import SCENARIOS
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
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run S1-S4 and S7 on peer libraries (pgqueuer), on the same server in the "
        "same run, and compare",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also print the results as a markdown table (the README's benchmark table)",
    )
    arguments = parser.parse_args(argv)
    unknown = sorted(set(arguments.only or ()) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not arguments.scale > 0:
        parser.error("--scale must be positive")
    absent = peers.missing() if arguments.peers else []
    if absent:
        parser.error(
            f"--peers needs {', '.join(absent)}, which is not installed; install the "
            f"benchmarks' extra: {peers.INSTALL_HINT}"
        )
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


def header(server: Server, server_version: str, scale: float, with_peers: bool) -> dict[str, Any]:
    """What was measured on what: server, machine, chancy (and the peers' versions)."""
    versions = (
        {name: importlib.metadata.version(name) for name in peers.PEER_PACKAGES}
        if with_peers
        else {}
    )
    return {
        "id": "header",
        "chancy": chancy_revision(),
        "postgresql": server_version,
        "server": server.describe(),
        "cpus": os.cpu_count(),
        # Other work on the machine slows every figure: its load when the run began.
        "load_average": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "scale": scale,
        **versions,
    }


def header_line(info: dict[str, Any]) -> str:
    """The header as one line of text."""
    changed = (
        f" [changed during the run, now {info['chancy_at_end']}]" if "chancy_at_end" in info else ""
    )
    beside = "".join(f" · {name} {info[name]}" for name in peers.PEER_PACKAGES if name in info)
    return (
        f"chancy {info['chancy']}{changed}{beside} · PostgreSQL {info['postgresql']} "
        f"({info['server']}) · {info['cpus']} CPUs (load {info['load_average']:g} at start) · "
        f"{info['platform']} · "
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
    for peer in result.peers:
        outcome = peer.figure_text if peer.error is None else f"[red]{escape(peer.error)}[/]"
        context.say(f"  {scenario.id} {escape(peer.peer)} ({peer.seconds:.1f} s): {outcome}")
    return result


async def run_all(
    server: Server,
    selected: Sequence[Scenario],
    scale: float,
    console: Console,
    *,
    with_peers: bool = False,
) -> tuple[dict[str, Any], list[Result]]:
    """The header, then every selected scenario in order (with the peers' runs of it, if
    ``with_peers``)."""
    info = header(server, await server.version(), scale, with_peers)
    context = Context(server=server, scale=scale, console=console, peers=with_peers)
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
        info, results = asyncio.run(
            run_all(server, selected, arguments.scale, progress, with_peers=arguments.peers)
        )
    elapsed = time.monotonic() - started
    at_end = chancy_revision()
    if at_end != info["chancy"]:
        info["chancy_at_end"] = at_end
    if arguments.json:
        print(json_line(info))
    else:
        output.print(header_line(info), soft_wrap=True, markup=False)
        print_table(output, f"chancy benchmarks ({elapsed:.0f} s)", results)
    if arguments.markdown:
        print(f"\n{header_line(info)}\n\n{markdown_table(results)}\n")
    for result in results:
        print(json_line(result.as_json()))
    sys.stdout.flush()
    return 1 if any(result.failed for result in results) else 0
