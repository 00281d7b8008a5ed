"""The asyncio executor: ``async def`` jobs on the worker's own event loop."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, ClassVar

from chancy.allowed import UNRESTRICTED, AllowedFunctions
from chancy.executor.base import (
    Executor,
    JobTimeoutError,
    call_arguments,
    timeout_message,
)
from chancy.executor.threads import ThreadExecutor
from chancy.jobs import QueuedJob

__all__ = ["AsyncioExecutor"]


class AsyncioExecutor(Executor):
    """Runs coroutine functions as tasks on the worker's loop, and plain functions in a
    pool of ``concurrency`` threads (as :class:`ThreadExecutor` does) so they never
    block it.

    Timeouts and cancellation interrupt a coroutine at its next ``await``. A plain function
    running in a thread cannot be interrupted: on timeout or cancel the job ends at once,
    but the thread finishes its call in the background. A coroutine that blocks the loop
    without awaiting stalls the whole worker: use the ``threads`` or ``processes``
    executor for such code.
    """

    name: ClassVar[str] = "asyncio"

    def __init__(self, concurrency: int, *, allowed: AllowedFunctions = UNRESTRICTED) -> None:
        super().__init__(concurrency, allowed=allowed)
        self._threads = ThreadExecutor(concurrency, allowed=allowed)

    async def stop(self) -> None:
        await self._threads.stop()

    async def run(self, job: QueuedJob) -> Any:
        fn = self.function(job)
        if not inspect.iscoroutinefunction(fn):
            return await self._threads.run(job)
        call = fn(**call_arguments(fn, job))
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return await call
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(timeout_message(job)) from None
            raise
