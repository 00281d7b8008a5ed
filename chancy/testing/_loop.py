"""Running a coroutine to its end from synchronous code, whether or not this thread
already runs an event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run ``coroutine()`` on an event loop of its own, in a thread of its own: asyncio
    connections belong to the loop that opened them, so nothing of the caller's loop (if
    any) is touched, and the caller's loop, if it runs, is not asked to nest."""

    async def main() -> T:
        return await coroutine()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chancy-testing") as pool:
        return pool.submit(asyncio.run, main()).result()
