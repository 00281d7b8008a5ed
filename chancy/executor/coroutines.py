"""The asyncio executor: ``async def`` jobs on the worker's own event loop."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, ClassVar

from chancy.allowed import UNRESTRICTED, AllowedFunctions
from chancy.executor.base import (
    EXITS,
    Executor,
    JobExitError,
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

    A job's module is imported in a thread, not on the loop. Timeouts and cancellation
    interrupt a coroutine at its next ``await``. A plain function running in a thread
    cannot be interrupted: on timeout or cancel the job ends at once, but the thread
    finishes its call in the background (:meth:`interrupt` says so). A coroutine that
    blocks the loop without awaiting stalls the whole worker: use the ``threads`` or
    ``processes`` executor for such code.
    """

    name: ClassVar[str] = "asyncio"

    def __init__(self, concurrency: int, *, allowed: AllowedFunctions = UNRESTRICTED) -> None:
        super().__init__(concurrency, allowed=allowed)
        self._threads = ThreadExecutor(concurrency, allowed=allowed)

    async def stop(self) -> None:
        await self._threads.stop()

    def interrupt(self, job_id: int) -> bool:
        return self._threads.interrupt(job_id)

    async def run(self, job: QueuedJob) -> Any:
        fn = await self.function_off_loop(job)
        if not inspect.iscoroutinefunction(fn):
            self._threads.reporter = self.reporter
            return await self._threads.run(job)
        call = fn(**call_arguments(fn, job, self.reporter))
        if job.timeout is None:  # no deadline to keep: spare each job a Timeout
            try:
                return await call
            except EXITS as exc:
                raise JobExitError.of(exc) from exc
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return await call
        except EXITS as exc:
            raise JobExitError.of(exc) from exc
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(timeout_message(job)) from None
            raise
