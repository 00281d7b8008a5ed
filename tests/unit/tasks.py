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
