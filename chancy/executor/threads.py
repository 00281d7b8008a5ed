"""The threads executor: plain functions in a bounded pool of threads."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from chancy.allowed import UNRESTRICTED, AllowedFunctions
from chancy.executor.base import (
    Executor,
    JobTimeoutError,
    call_arguments,
    timeout_message,
)
from chancy.jobs import QueuedJob

__all__ = ["ThreadExecutor"]


class ThreadExecutor(Executor):
    """Runs each job in a pool of ``concurrency`` threads of its own; ``async def`` jobs
    get an event loop of their own in their thread.

    Python cannot stop a thread: on timeout or cancel the job ends at once (``failed`` or
    ``cancelled``), but the call goes on in its thread, holding a pool thread until it
    returns. Use the ``processes`` executor where a job must really be stopped.
    """

    name: ClassVar[str] = "threads"

    def __init__(self, concurrency: int, *, allowed: AllowedFunctions = UNRESTRICTED) -> None:
        super().__init__(concurrency, allowed=allowed)
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="chancy-job")

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def run(self, job: QueuedJob) -> Any:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        fn = self.function(job)
        arguments = call_arguments(fn, job)
        if inspect.iscoroutinefunction(fn):
            call = functools.partial(_run_coroutine, fn, arguments)
        else:
            call = functools.partial(fn, **arguments)
        context = contextvars.copy_context()
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(context.run, call)
        )
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return await future
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(timeout_message(job)) from None
            raise


def _run_coroutine(fn: Any, arguments: dict[str, Any]) -> Any:
    return asyncio.run(fn(**arguments))
