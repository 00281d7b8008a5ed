"""Real worker processes (``chancy worker``) for a chaos scenario, and what befell them.

A :class:`Fleet` starts ``python -m chancy worker --app benchmarks.chaos.jobs:chancy`` processes
on one database, keeps a number of them alive (replacing any that died or are stopping),
and kills, freezes, thaws and stops (SIGTERM) them on request. Every such event is
recorded with its wall-clock time, so the invariants can tell which runs were interrupted
by a death, and how long their jobs waited afterwards. Each worker's stderr (its log) goes
to a file, read at the end.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Literal

from benchmarks.chaos.jobs import CONCURRENCY_ENV, DSN_ENV, JOURNAL_ENV

__all__ = ["Fleet", "LogSummary", "Member", "Start", "WorkerEvent", "WorkerSettings"]

ROOT = Path(__file__).resolve().parents[2]
APP = "benchmarks.chaos.jobs:chancy"
ALLOW = ("benchmarks.chaos.jobs.*", "benchmarks.chaos.slow_import.*")
STOP_GRACE = 20.0
# The completer's line for an outcome the fence turned away (chancy/worker/completer.py).
STALE_LINE = re.compile(r"outcome \w+ not written, the attempt no longer holds the job")
NOTEWORTHY = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
LOG_EXCERPT_LINES = 40
STARTED_LINE = "started on queues"

EventKind = Literal[
    "started", "killed", "frozen", "thawed", "terminated", "exited", "stopped", "hung"
]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The command-line options every worker of a fleet is started with."""

    concurrency: int = 10
    lease_seconds: float = 2.0
    rescue_interval: float = 0.5
    shutdown_timeout: float = 2.0

    def arguments(self) -> list[str]:
        return [
            "--concurrency",
            str(self.concurrency),
            "--lease-seconds",
            str(self.lease_seconds),
            "--rescue-interval",
            str(self.rescue_interval),
            "--shutdown-timeout",
            str(self.shutdown_timeout),
            *(argument for pattern in ALLOW for argument in ("--allow", pattern)),
        ]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerEvent:
    """Something that happened to worker ``pid`` at ``at`` (seconds since the epoch).

    ``exited`` is a death the fleet did not cause (``returncode`` says how);
    ``terminated`` a SIGTERM sent mid-run (a graceful stop); ``stopped`` is the exit after
    a SIGTERM, mid-run or the one that ends every scenario; ``hung`` is a worker that did
    not exit within :data:`STOP_GRACE` of the final SIGTERM.
    """

    pid: int
    kind: EventKind
    at: float
    returncode: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Start:
    """A run's start, as its worker noted it in its journal."""

    job_id: int
    attempt: int
    pid: int
    at: float
    fence: int | None = None


@dataclasses.dataclass(eq=False)
class Member:
    """One worker process of the fleet."""

    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    frozen: bool = False
    stopping: bool = False
    ended: bool = False  # its exit is recorded and its log closed

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def announced(self) -> bool:
        """Whether the worker said it started (and so had its signal handlers)."""
        return STARTED_LINE in self.log_path.read_text(errors="replace")


@dataclasses.dataclass(frozen=True, slots=True)
class LogSummary:
    """What the workers' logs say: outcomes the fence rejected, and the noteworthy
    lines (warnings, errors, tracebacks) counted by their text without numbers."""

    stale_rejected: int
    noteworthy: collections.Counter[str]
    excerpt: tuple[str, ...]


class Fleet:
    """The worker processes of one scenario, on the database at ``dsn``; their logs go to
    ``directory``, their journals of run starts to ``directory / "journal"``. ``seed``
    makes the choice of victims repeatable."""

    def __init__(
        self, dsn: str, directory: Path, settings: WorkerSettings, *, seed: int = 0
    ) -> None:
        self.dsn = dsn
        self.directory = directory
        self.settings = settings
        self.members: list[Member] = []
        self.events: list[WorkerEvent] = []
        self.random = random.Random(seed)
        self.journal = directory / "journal"
        self.journal.mkdir(parents=True, exist_ok=True)

    @property
    def alive(self) -> list[Member]:
        """The members running now, frozen ones included."""
        return [member for member in self.members if member.alive]

    @property
    def serving(self) -> list[Member]:
        """The members running, neither frozen nor stopping."""
        return [member for member in self.alive if not member.frozen and not member.stopping]

    def start(self) -> Member:
        """Start one more worker process."""
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("CHANCY_DSN", "CHANCY_TEST_DSN")
        }
        environment.update(
            {
                DSN_ENV: self.dsn,
                CONCURRENCY_ENV: str(self.settings.concurrency),
                JOURNAL_ENV: str(self.journal),
                "PYTHONPATH": str(ROOT),
            }
        )
        log_path = self.directory / f"worker-{len(self.members):03d}.log"
        log_file = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "chancy", "worker", "--app", APP, *self.settings.arguments()],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        member = Member(process, log_path, log_file)
        self.members.append(member)
        self._record(member.pid, "started")
        return member

    def keep(self, count: int) -> None:
        """Record the members that died on their own (or stopped, after :meth:`terminate`),
        and start new ones until ``count`` are running and not stopping."""
        for member in self.members:
            if not member.ended and member.process.poll() is not None:
                self._end(member, "stopped" if member.stopping else "exited")
        staying = [member for member in self.alive if not member.stopping]
        for _ in range(count - len(staying)):
            self.start()

    def pick(self, *, exclude: set[int] | frozenset[int] = frozenset()) -> Member | None:
        """A random serving member whose pid is not in ``exclude``, if there is one."""
        candidates = [member for member in self.serving if member.pid not in exclude]
        return self.random.choice(candidates) if candidates else None

    def kill(self, member: Member) -> None:
        """SIGKILL ``member``: no goodbye, its runs are abandoned where they are."""
        member.process.kill()
        member.process.wait()
        self._end(member, "killed")

    def freeze(self, member: Member) -> None:
        """SIGSTOP ``member``: it holds its jobs and connections but does nothing."""
        member.process.send_signal(signal.SIGSTOP)
        member.frozen = True
        self._record(member.pid, "frozen")

    def thaw(self, member: Member) -> None:
        """SIGCONT a frozen ``member``: it carries on as if nothing had happened."""
        member.process.send_signal(signal.SIGCONT)
        member.frozen = False
        self._record(member.pid, "thawed")

    def terminate(self, member: Member) -> None:
        """SIGTERM ``member``: it stops gracefully, finishing or giving back its jobs, and
        exits in its own time (:meth:`keep` records it, and starts another meanwhile)."""
        member.process.send_signal(signal.SIGTERM)
        member.stopping = True
        self._record(member.pid, "terminated")

    def stop_all(self) -> None:
        """SIGTERM every living member (once: a second SIGTERM stops a worker at once) and
        wait for them; one still running after :data:`STOP_GRACE` seconds is recorded as
        ``hung`` and killed."""
        self.keep(0)
        for member in self.alive:
            if member.frozen:
                self.thaw(member)
            if not member.stopping:
                member.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for member in self.members:
            if member.ended:
                continue
            try:
                member.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
                self._end(member, "hung")
                continue
            self._end(member, "stopped")

    def deaths(self) -> dict[int, list[WorkerEvent]]:
        """For each worker, the times it stopped serving while it may have run jobs
        (killed, died on its own, frozen), in order."""
        found: dict[int, list[WorkerEvent]] = collections.defaultdict(list)
        for event in self.events:
            if event.kind in ("killed", "exited", "frozen"):
                found[event.pid].append(event)
        return dict(found)

    def bad_stops(self) -> list[str]:
        """The workers that did not stop cleanly on a SIGTERM (mid-run, or the final
        one): hung, or exited with an error. (A worker still starting up, before it
        handles signals, dies of the SIGTERM: that is not held against it.)"""
        found: list[str] = []
        by_pid = {member.pid: member for member in self.members}
        for event in self.events:
            if event.kind == "hung":
                found.append(f"worker {event.pid} still running {STOP_GRACE:.0f} s after SIGTERM")
            elif event.kind == "stopped" and event.returncode != 0:
                starting = event.returncode == -signal.SIGTERM and not by_pid[event.pid].announced()
                if not starting:
                    found.append(f"worker {event.pid} exited with {event.returncode} on SIGTERM")
        return found

    def clean_stops(self) -> frozenset[int]:
        """The pids of the workers that exited with 0 after a SIGTERM."""
        return frozenset(
            event.pid for event in self.events if event.kind == "stopped" and event.returncode == 0
        )

    def count(self, kind: EventKind) -> int:
        """How many events of ``kind`` were recorded."""
        return sum(1 for event in self.events if event.kind == kind)

    def tail(self, pid: int, lines: int = 6) -> str:
        """The last ``lines`` lines of worker ``pid``'s log, as evidence."""
        for member in self.members:
            if member.pid == pid:
                text = member.log_path.read_text(errors="replace").splitlines()
                return " | ".join(text[-lines:])
        return ""

    def read_journal(self) -> list[Start]:
        """Every run start the workers noted, from all their journals."""
        starts: list[Start] = []
        for path in sorted(self.journal.glob("*.journal")):
            for line in path.read_text().splitlines():
                job_id, attempt, pid, at, fence = line.split()
                starts.append(Start(int(job_id), int(attempt), int(pid), float(at), _fence(fence)))
        return starts

    def read_logs(self) -> LogSummary:
        """Read every member's log."""
        stale = 0
        noteworthy: collections.Counter[str] = collections.Counter()
        excerpt: list[str] = []
        for member in self.members:
            text = member.log_path.read_text(errors="replace")
            for line in text.splitlines():
                if STALE_LINE.search(line):
                    stale += 1
                if NOTEWORTHY.search(line):
                    noteworthy[_shape(line)] += 1
                    if len(excerpt) < LOG_EXCERPT_LINES:
                        excerpt.append(f"[pid {member.pid}] {line}")
        return LogSummary(stale, noteworthy, tuple(excerpt))

    def _end(self, member: Member, kind: EventKind) -> None:
        """Record how ``member`` (whose process is gone) ended, and close its log."""
        self._record(member.pid, kind, member.process.returncode)
        member.log_file.close()
        member.ended = True

    def _record(self, pid: int, kind: EventKind, returncode: int | None = None) -> None:
        self.events.append(WorkerEvent(pid, kind, time.time(), returncode))


def _fence(text: str) -> int | None:
    return None if text == "None" else int(text)


def _shape(line: str) -> str:
    """``line`` without its timestamp and numbers, so that lines saying the same thing
    are counted together."""
    message = line.split(": ", 1)[-1] if " chancy" in line else line
    return re.sub(r"\d+(\.\d+)?", "N", message).strip()[:160]
