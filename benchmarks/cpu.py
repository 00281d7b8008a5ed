"""CPU time used during a measurement: by each worker process, by the PostgreSQL server
(its postmaster and every process under it) and by the whole machine, so that a
CPU-bound figure shows as one.

The server's processes are found from a connection: the backend serving it
(``pg_backend_pid()``) is a child of the postmaster. That works for the embedded server
and for a ``--dsn`` server on this machine; for a server elsewhere (or in a container,
whose pids are not this machine's) the server's share is left out, with a note.

CPU time of a process tree is its processes' user and system time plus the time of the
children they have already reaped: the postmaster reaps every backend that ends, so
connections opened and closed during the measurement are counted too.
"""

from __future__ import annotations

import dataclasses
import time

import asyncpg
import psutil

__all__ = ["CpuMeter", "CpuUsage", "find_postmaster", "tree_cpu_seconds"]

BACKEND_AGE_LIMIT = 60.0
"""A backend found by pid must have started this recently: an older process of that pid
belongs to another server on this machine, not to the one the connection reached."""


async def find_postmaster(dsn: str) -> psutil.Process | None:
    """The postmaster of the server at ``dsn``, if that server runs on this machine."""
    connection = await asyncpg.connect(dsn)
    try:
        backend_pid = int(await connection.fetchval("SELECT pg_backend_pid()"))
        try:
            backend = psutil.Process(backend_pid)
            if time.time() - backend.create_time() > BACKEND_AGE_LIMIT:
                return None
            parent = backend.parent()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
    finally:
        await connection.close()
    if parent is None or "postgres" not in parent.name().lower():
        return None
    return parent


def tree_cpu_seconds(process: psutil.Process) -> float:
    """User + system seconds of ``process``, its live descendants and the children they
    have reaped; 0 for a process that has gone."""
    total = 0.0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, since boot)."""
    times = psutil.cpu_times()
    idle = float(times.idle) + float(getattr(times, "iowait", 0.0))
    return float(sum(times)) - idle


@dataclasses.dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds of each worker, of the server (None: not measured) and of the machine,
    at a monotonic instant."""

    at: float
    workers: tuple[float, ...]
    server: float | None
    machine: float


@dataclasses.dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU used between two samples, in percent of one CPU (100 = one CPU busy all the
    time): each worker's, the server's (None: not measured) and the whole machine's."""

    seconds: float
    workers: tuple[float, ...]
    server: float | None
    machine: float
    cpus: int

    def describe(self, processes: str = "worker(s)") -> str:
        """``CPU over 6.0 s: worker(s) 96 %, 94 % of a CPU; server 160 %; machine 198 % of
        200 % (2 CPUs)``; ``processes`` names the measured processes."""
        measured = ", ".join(f"{value:.0f} %" for value in self.workers)
        measured = f"{processes} {measured} of a CPU; " if self.workers else ""
        server = "not measured" if self.server is None else f"{self.server:.0f} %"
        return (
            f"CPU over {self.seconds:.1f} s: {measured}server {server}; "
            f"machine {self.machine:.0f} % of {100 * self.cpus} % ({self.cpus} CPUs)"
        )

    def as_extra(self, prefix: str = "cpu", processes: str = "workers") -> dict[str, object]:
        """The figures for a result's JSON line, their keys starting with ``prefix``;
        ``processes`` names the measured processes."""
        return {
            f"{prefix}_window_s": self.seconds,
            f"{prefix}_{processes}_pct": [round(value, 1) for value in self.workers],
            f"{prefix}_server_pct": self.server,
            f"{prefix}_machine_pct": self.machine,
            "cpus": self.cpus,
        }


class CpuMeter:
    """Samples the CPU time of worker processes, of the server and of the machine."""

    def __init__(self, workers: list[psutil.Process], server: psutil.Process | None) -> None:
        self._workers = workers
        self._server = server

    def sample(self) -> CpuSample:
        """The CPU seconds used so far."""
        return CpuSample(
            at=time.monotonic(),
            workers=tuple(tree_cpu_seconds(worker) for worker in self._workers),
            server=None if self._server is None else tree_cpu_seconds(self._server),
            machine=machine_busy_seconds(),
        )

    @staticmethod
    def usage(first: CpuSample, last: CpuSample) -> CpuUsage:
        """What was used between two samples, in percent of one CPU."""
        seconds = max(last.at - first.at, 1e-9)

        def percent(before: float, after: float) -> float:
            return 100 * (after - before) / seconds

        server = (
            None
            if first.server is None or last.server is None
            else percent(first.server, last.server)
        )
        return CpuUsage(
            seconds=seconds,
            workers=tuple(map(percent, first.workers, last.workers)),
            server=server,
            machine=percent(first.machine, last.machine),
            cpus=psutil.cpu_count() or 1,
        )
