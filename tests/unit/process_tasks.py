"""Module-level job functions for the process executor's tests (children import them by
name)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

from chancy.executor import QueuedJob


def add(a: int, b: int) -> int:
    return a + b


async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def fail(message: str) -> None:
    raise ValueError(message)


def job_id(*, job: QueuedJob) -> int:
    return job.id


def pid() -> int:
    return os.getpid()


def write_pid_then_sleep(path: str, seconds: float) -> None:
    """Announce the process running the job on the named pipe at ``path``, then sleep."""
    with open(path, "w") as pipe:
        pipe.write(str(os.getpid()))
    time.sleep(seconds)


def exit_with(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def allocate(size: int) -> int:
    return len(bytearray(size))


def unpicklable() -> object:
    return threading.Lock()


def span(seconds: float) -> tuple[int, float, float]:
    """Which process ran the job, and when it started and ended by the system-wide
    monotonic clock."""
    started = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), started, time.monotonic()
