"""Real ``chancy worker`` processes, and what the database says about their work.

A :class:`WorkerProcess` runs ``python -m chancy worker --app benchmarks.tasks:chancy``
from the repository root, on one scenario's database. :func:`wait_drained` follows a
drain with cheap index lookups (never a count over the whole table while the worker
runs), and :func:`drain_timings` reads the figures from the stored rows afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

import asyncpg

from benchmarks import tasks

__all__ = [
    "ROOT",
    "DrainTimings",
    "VerificationError",
    "WorkerFailedError",
    "WorkerProcess",
    "drain_timings",
    "wait_drained",
    "worker_processes",
]

ROOT = Path(__file__).resolve().parents[1]
APP = "benchmarks.tasks:chancy"
STOP_TIMEOUT = 40.0


class VerificationError(Exception):
    """The database does not hold what the scenario should have left in it."""


class WorkerFailedError(Exception):
    """A worker process ended while it was still needed."""


class WorkerProcess:
    """One ``chancy worker`` process on the database ``dsn`` (or another worker command,
    such as a peer library's, given as ``command``); its output goes to a temporary
    file, shown when something goes wrong."""

    def __init__(
        self, dsn: str, *, concurrency: int = 10, command: Sequence[str] | None = None
    ) -> None:
        self._dsn = dsn
        self._concurrency = concurrency
        self._command = list(command or [sys.executable, "-m", "chancy", "worker", "--app", APP])
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the worker was not started")
        return self._process.pid

    def start(self) -> None:
        """Start the process (it connects, checks the schema, then claims at once)."""
        # Closed in stop(): it outlives this method, so no `with` block.
        self._log = tempfile.TemporaryFile(prefix="chancy-bench-worker-")  # noqa: SIM115
        env = {
            **os.environ,
            tasks.DSN_ENV: self._dsn,
            tasks.CONCURRENCY_ENV: str(self._concurrency),
            "PYTHONPATH": str(ROOT),
        }
        self._process = subprocess.Popen(
            self._command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check_alive(self) -> None:
        """Raise :class:`WorkerFailedError` (with the end of its log) if it has exited."""
        if self._process is not None and self._process.poll() is not None:
            raise WorkerFailedError(
                f"worker {self._process.pid} exited with {self._process.returncode}:\n"
                + self.log_tail()
            )

    def stop(self) -> None:
        """Stop gracefully (SIGTERM); kill it if it has not exited within the timeout."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_problems(self, limit: int = 3) -> list[str]:
        """The WARNING/ERROR lines the process logged so far: how many, and the last few."""
        problems = [
            line
            for line in self.log_tail(lines=100_000).splitlines()
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ]
        if not problems:
            return []
        return [f"worker {self.pid} logged {len(problems)} warning/error line(s); last:"] + [
            f"    {line}" for line in problems[-limit:]
        ]

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def worker_processes(
    dsn: str, count: int = 1, *, concurrency: int = 10
) -> Iterator[list[WorkerProcess]]:
    """Start ``count`` workers on ``dsn``; all are stopped when the block ends."""
    workers = [WorkerProcess(dsn, concurrency=concurrency) for _ in range(count)]
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        for worker in workers:
            worker.stop()


PROGRESS_SQL = """
SELECT
    (SELECT id FROM chancy_jobs
      WHERE queue = $1 AND state = 'pending' AND concurrency_key IS NULL AND rate_key IS NULL
      ORDER BY priority, id LIMIT 1) AS next_pending,
    (SELECT count(*) FROM chancy_jobs WHERE state = 'running') AS running
"""


async def wait_drained(
    connection: asyncpg.Connection,
    workers: list[WorkerProcess],
    *,
    first_id: int,
    count: int,
    timeout: float,
    poll: float = 0.1,
    on_progress: Callable[[int], None] | None = None,
) -> float:
    """Wait until the queue has no pending and no running job; returns the monotonic time
    at which that was seen.

    The jobs ``first_id .. first_id + count - 1`` run in id order, so the done count is
    estimated from the next pending id (an index lookup) less the running jobs;
    ``on_progress`` gets that estimate at every poll.
    """
    deadline = time.monotonic() + timeout
    while True:
        row = await connection.fetchrow(PROGRESS_SQL, tasks.QUEUE)
        assert row is not None
        next_pending: int | None = row["next_pending"]
        running: int = row["running"]
        if next_pending is None and running == 0:
            return time.monotonic()
        if on_progress is not None:
            claimed = (first_id + count if next_pending is None else next_pending) - first_id
            on_progress(max(0, claimed - running))
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the queue was not drained within {timeout:.0f} s")
        await asyncio.sleep(poll)


@dataclasses.dataclass(frozen=True, slots=True)
class DrainTimings:
    """A drain as the database recorded it (all times by the database's clock)."""

    succeeded: int
    total: int
    first_started: datetime
    last_completed: datetime

    @property
    def seconds(self) -> float:
        return (self.last_completed - self.first_started).total_seconds()

    def jobs_per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else float("inf")


async def drain_timings(connection: asyncpg.Connection, expected: int) -> DrainTimings:
    """Count the queue's jobs and read ``min(started_at)`` and ``max(completed_at)``;
    raise :class:`VerificationError` unless exactly ``expected`` jobs exist and all
    succeeded."""
    row = await connection.fetchrow(
        """
        SELECT count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
               count(*) AS total,
               min(started_at) AS first_started,
               max(completed_at) AS last_completed
          FROM chancy_jobs WHERE queue = $1
        """,
        tasks.QUEUE,
    )
    assert row is not None
    if row["succeeded"] != expected or row["total"] != expected:
        raise VerificationError(
            f"expected {expected} succeeded jobs, found {row['succeeded']} succeeded "
            f"of {row['total']}"
        )
    return DrainTimings(
        succeeded=row["succeeded"],
        total=row["total"],
        first_started=row["first_started"],
        last_completed=row["last_completed"],
    )
