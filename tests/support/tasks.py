"""Module-level job functions the tests wrap with Job.from_func."""

from __future__ import annotations

from typing import Any

from chancy.executor import QueuedJob


def greet(name: str, punctuation: str = "!") -> str:
    return f"Hello, {name}{punctuation}"


async def greet_async(name: str) -> str:
    return f"Hello, {name}!"


def anything(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def needs_job(name: str, *, job: QueuedJob) -> int:
    return job.id


def positional_only(name: str, /) -> str:
    return name


class Tasks:
    @staticmethod
    def static(name: str) -> str:
        return name

    def method(self, name: str) -> str:
        return name


# Recorders for worker tests: jobs run in the test's own process with the asyncio and
# threads executors, so they can report through module state.
calls: list[str] = []
running_now = 0
most_running = 0
started: dict[str, Any] = {}


def record(label: str) -> str:
    calls.append(label)
    return label


async def record_async(label: str) -> str:
    calls.append(label)
    return label


def fail(message: str) -> None:
    raise ValueError(message)


async def sleep_async(seconds: float, label: str = "") -> str:
    import asyncio

    if label:
        started[label] = True
    await asyncio.sleep(seconds)
    return "slept"


async def track_concurrency(seconds: float) -> int:
    import asyncio

    global running_now, most_running
    running_now += 1
    most_running = max(most_running, running_now)
    try:
        await asyncio.sleep(seconds)
    finally:
        running_now -= 1
    return most_running


def not_json() -> object:
    return object()


async def whoami(*, job: QueuedJob) -> dict[str, int]:
    return {"id": job.id, "attempts": job.attempts}


def fail_until(attempt: int, *, job: QueuedJob) -> int:
    if job.attempts < attempt:
        raise RuntimeError(f"attempt {job.attempts} fails")
    return job.attempts


def sleep_sync(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"


# Jobs whose outcome is hard to store or make, or that try to end their worker.


def nul_result() -> str:
    return "a\x00b"


def surrogate_result() -> str:
    import os

    return os.fsdecode(b"\xff")  # a lone surrogate, as for a file name in another encoding


def raise_nul() -> None:
    raise ValueError("bad\x00byte")


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def exit_worker(code: int) -> None:
    import sys

    sys.exit(code)


async def exit_worker_async(code: int) -> None:
    import sys

    sys.exit(code)


def interrupt_worker() -> None:
    raise KeyboardInterrupt


# A plain function that runs until the test opens its gate (threads cannot be stopped).
gates: dict[str, Any] = {}


def wait_for_gate(label: str) -> str:
    import threading

    gate = gates.setdefault(label, threading.Event())
    started[label] = True
    if not gate.wait(timeout=60):
        raise TimeoutError(f"the test never opened the gate {label!r}")
    return label


# A coroutine that never awaits: it holds the worker's event loop for ``seconds``.
runs: dict[str, int] = {}


async def block_loop(seconds: float, label: str) -> str:
    import time

    runs[label] = runs.get(label, 0) + 1
    started[label] = True
    time.sleep(seconds)  # noqa: ASYNC251 (blocking the loop is the point)
    return label


def import_missing_h13() -> None:
    """Raises ModuleNotFoundError when called: an error of the job's own code, not of its
    deployment (its module imports fine)."""
    import no_such_dependency_h13  # type: ignore[import-not-found]  # noqa: F401
