"""Job functions for the workflow tests: steps that return a value, read their parents'
results, fail, or take their time."""

from __future__ import annotations

import asyncio
from typing import Any

from chancy.executor import QueuedJob


def number(n: int) -> int:
    return n


def parents_seen(*, job: QueuedJob) -> dict[str, Any]:
    """The results of this step's parents, by step name."""
    return dict(job.parent_results)


def add_parents(*, job: QueuedJob) -> int:
    return sum(int(value) for value in job.parent_results.values())


def fail(message: str) -> None:
    raise ValueError(message)


def fail_until(attempt: int, *, job: QueuedJob) -> int:
    if job.attempts < attempt:
        raise RuntimeError(f"attempt {job.attempts} fails")
    return job.attempts


async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
