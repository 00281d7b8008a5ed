"""The ceiling of concurrent single-row inserts, measured with PostgreSQL's ``pgbench``.

``pgbench`` is PostgreSQL's own load generator, written in C: with 16 clients each
running one-row INSERT transactions (``-M prepared``, no vacuum, a script of one
statement) into the plain table of :mod:`benchmarks.ceilings`, it shows what the server
does with 16 concurrent committing writers when no client-side work is in the way.

It is looked for next to the server's own programs first (the embedded server ships
one; a local server's ``bin`` directory usually has one), then on ``PATH``, then in
Debian's ``/usr/lib/postgresql/*/bin``. Without it the ceiling is reported as missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

import psutil
from sqlalchemy.engine import URL

from benchmarks.ceilings import PLAIN_PAYLOAD, PLAIN_TABLE

__all__ = ["PgbenchRun", "find_pgbench", "insert_ceiling", "pgbench_version"]

PGBENCH_TIMEOUT = 600.0
INSERT_SCRIPT = (
    f"INSERT INTO {PLAIN_TABLE} (payload) VALUES ('{PLAIN_PAYLOAD}'::jsonb) RETURNING id;\n"
)


@dataclasses.dataclass(frozen=True, slots=True)
class PgbenchRun:
    """One pgbench run: transactions per second (without connection time), and how many
    transactions it says it processed."""

    tps: float
    transactions: int


def find_pgbench(postmaster: psutil.Process | None) -> Path | None:
    """The ``pgbench`` program: next to the server's, else on ``PATH``, else Debian's
    newest; None if there is none."""
    candidates: list[str] = []
    if postmaster is not None:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            candidates.append(str(Path(postmaster.exe()).with_name("pgbench")))
    on_path = shutil.which("pgbench")
    if on_path:
        candidates.append(on_path)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


async def pgbench_version(pgbench: Path) -> str:
    """``pgbench --version``, e.g. ``pgbench (PostgreSQL) 18.1``."""
    process = await asyncio.create_subprocess_exec(
        str(pgbench),
        "--version",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return output.decode(errors="replace").strip()


def connection_environment(url: URL) -> dict[str, str]:
    """libpq's environment variables for ``url`` (so no password is on a command line)."""
    host = url.host or url.query.get("host")
    values = {
        "PGHOST": host if isinstance(host, str) else None,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }
    return {key: value for key, value in values.items() if value}


async def insert_ceiling(
    pgbench: Path, url: URL, *, clients: int, threads: int, seconds: int
) -> PgbenchRun:
    """Run ``clients`` pgbench clients for ``seconds``, each committing one-row INSERTs
    into the plain table (which must exist) of the database at ``url``."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="chancy-bench-") as script:
        script.write(INSERT_SCRIPT)
        script.flush()
        process = await asyncio.create_subprocess_exec(
            str(pgbench),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(seconds),
            "-f",
            script.name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **connection_environment(url)},
        )
        output, errors = await asyncio.wait_for(process.communicate(), PGBENCH_TIMEOUT)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"pgbench exited with {process.returncode}: {errors.decode(errors='replace')[-500:]}"
        )
    return parse_output(text)


def parse_output(text: str) -> PgbenchRun:
    """The figures of pgbench's report (the tps without connection time: PostgreSQL 14 and
    later say ``without initial connection time``, older ones ``excluding connections
    establishing``)."""
    processed = re.search(r"number of transactions actually processed: (\d+)", text)
    tps = re.search(
        r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections)", text
    ) or re.search(r"tps = ([0-9.]+)", text)
    if processed is None or tps is None:
        raise RuntimeError(f"pgbench's report was not understood:\n{text[-500:]}")
    return PgbenchRun(tps=float(tps.group(1)), transactions=int(processed.group(1)))
