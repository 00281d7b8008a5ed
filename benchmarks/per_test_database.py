"""``python -m benchmarks.per_test_database``: what chancy's pytest plugin costs a test.

Prints two lines (and JSON with ``--json``): the median cost of one ``chancy_dsn``
(a copy of the migrated template made, then dropped) over 30 tests, against the budget of
50 ms; and the wall time of ``examples/testing_app``'s suite (50 tests, one process),
against the budget of 10 s. On a private embedded PostgreSQL unless ``CHANCY_TEST_DSN``
names a server, as for the plugin itself.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.engine import URL

from chancy.testing.databases import (
    create_database,
    drop_database,
    migrated_template,
    test_server,
    unique_database_name,
)

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "testing_app"
DATABASE_BUDGET_MS = 50.0
SUITE_BUDGET_S = 10.0
SAMPLES = 30


async def database_costs(server: URL) -> list[float]:
    """Milliseconds of each of :data:`SAMPLES` databases made and dropped as the plugin
    does for a test."""
    template = await migrated_template(server)
    costs = []
    try:
        for _ in range(SAMPLES):
            name = unique_database_name("chancy_bench")
            started = time.perf_counter()
            await create_database(server, name, template=template)
            await drop_database(server, name)
            costs.append((time.perf_counter() - started) * 1000)
    finally:
        await drop_database(server, template)
    return costs


def suite_seconds(server: URL) -> float:
    """Wall seconds of examples/testing_app's suite, in one process, on ``server``."""
    environment = {**os.environ, "CHANCY_TEST_DSN": server.render_as_string(hide_password=False)}
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(ROOT), str(APP), environment.get("PYTHONPATH", "")) if part
    )
    entry_points = importlib.metadata.entry_points(group="pytest11")
    registered = any(entry.value == "chancy.testing.plugin" for entry in entry_points)
    plugin = [] if registered else ["-p", "chancy.testing.plugin"]  # an older editable install
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin],
        cwd=APP,
        env=environment,
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_test_database")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    arguments = parser.parse_args()
    with test_server() as server:
        costs = asyncio.run(database_costs(server))
        seconds = suite_seconds(server)
    median = statistics.median(costs)
    lines = [
        {
            "id": "T1",
            "what": "chancy_dsn: a database per test (made from the template, then dropped)",
            "median_ms": round(median, 1),
            "p90_ms": round(statistics.quantiles(costs, n=10)[-1], 1),
            "budget_ms": DATABASE_BUDGET_MS,
            "ratio": round(median / DATABASE_BUDGET_MS, 2),
        },
        {
            "id": "T2",
            "what": "examples/testing_app: 50 tests, one process",
            "seconds": round(seconds, 1),
            "budget_s": SUITE_BUDGET_S,
            "ratio": round(seconds / SUITE_BUDGET_S, 2),
        },
    ]
    for line in lines:
        if arguments.json:
            print(json.dumps(line))
        else:
            print(", ".join(f"{key} {value}" for key, value in line.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
