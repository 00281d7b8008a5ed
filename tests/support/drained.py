"""Job functions for the tests of chancy.testing: they record their runs in this module.

A plugin of the test suite (``tests/conftest.py``): its fixture ``fresh_records`` empties
the record around a test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from chancy.jobs import Job, QueuedJob

RAN: list[str] = []
PUSHER: Any = None  # the Chancy a job pushes with (set by the test)


def reset() -> None:
    RAN.clear()


@pytest.fixture
def fresh_records() -> Iterator[None]:
    """An empty record before and after the test, and no pusher left set."""
    global PUSHER
    reset()
    yield
    reset()
    PUSHER = None


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


async def push_itself(name: str) -> None:
    RAN.append(name)
    await PUSHER.push(Job.from_func(push_itself, kwargs={"name": name}))


def takes_allowed(allowed: list[str]) -> list[str]:
    return allowed
