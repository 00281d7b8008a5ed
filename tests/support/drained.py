"""Job functions for the tests of chancy.testing: they record their runs in this module."""

from __future__ import annotations

import asyncio
from typing import Any

from chancy.jobs import Job, QueuedJob

RAN: list[str] = []
PUSHER: Any = None  # the Chancy a job pushes with (set by the test)


def reset() -> None:
    RAN.clear()


async def record(name: str) -> str:
    RAN.append(name)
    return name


def record_sync(name: str) -> str:
    RAN.append(name)
    return name


async def push_child(name: str) -> None:
    RAN.append(name)
    await PUSHER.push(Job.from_func(record, kwargs={"name": f"{name}-child"}))


async def fail(name: str) -> None:
    RAN.append(name)
    raise ValueError(f"{name} failed")


async def sleep_long(name: str) -> None:
    RAN.append(name)
    await asyncio.sleep(3600)


def exits(name: str) -> None:
    RAN.append(name)
    raise KeyboardInterrupt


async def whoami(*, job: QueuedJob) -> dict[str, Any]:
    return {"id": job.id, "attempts": job.attempts, "kwargs": dict(job.kwargs)}


async def echo(value: Any) -> Any:
    return value


def unstorable() -> object:
    return object()


async def record_kw(name: str, n: int = 0) -> str:
    RAN.append(name)
    return name
