"""The threads executor: plain functions in a bounded pool of threads."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
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
from chancy.jobs import QueuedJob

__all__ = ["ThreadExecutor"]


class ThreadExecutor(Executor):
    """Runs each job in a pool of ``concurrency`` threads of its own; ``async def`` jobs
    get an event loop of their own in their thread. Everything a job does happens in its
    thread, the import of its module included, so none of it holds up the worker's loop
    (its heartbeat, its other jobs).

    Python cannot stop a thread: on timeout or cancel the job ends at once (``failed`` or
    ``cancelled``), but the call goes on in its thread, holding a pool thread until it
    returns. :meth:`interrupt` says so before a graceful stop would give such a job
    back. Use the ``processes`` executor where a job must really be stopped.
    """

    name: ClassVar[str] = "threads"

    def __init__(self, concurrency: int, *, allowed: AllowedFunctions = UNRESTRICTED) -> None:
        super().__init__(concurrency, allowed=allowed)
        self._pool: ThreadPoolExecutor | None = None
        self._calls = _ThreadCalls()

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="chancy-job")

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def interrupt(self, job_id: int) -> bool:
        return self._calls.interrupt(job_id)

    async def run(self, job: QueuedJob) -> Any:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        context = contextvars.copy_context()
        call = self._calls.new(job.id)
        run = functools.partial(context.run, self._call, job, call)
        future = asyncio.get_running_loop().run_in_executor(self._pool, run)
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return await future
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(timeout_message(job)) from None
            raise
        finally:
            self._calls.forget(job.id, call)

    def _call(self, job: QueuedJob, call: _Call) -> Any:
        """In a pool thread: import the job's function, then call it (unless the run was
        interrupted before it started)."""
        if not self._calls.begin(call):
            raise asyncio.CancelledError
        try:
            fn = self.function(job)
            arguments = call_arguments(fn, job, self.reporter)
            if inspect.iscoroutinefunction(fn):
                return asyncio.run(fn(**arguments))
            return fn(**arguments)
        except EXITS as exc:
            raise JobExitError.of(exc) from exc
        finally:
            self._calls.end(call)


class _Call:
    """One run's call: ``waiting`` for a pool thread, ``running`` in it, ``done``, or
    ``interrupted`` before it began (then it never begins)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "waiting"


class _ThreadCalls:
    """The calls of the runs going on, by job id: which of them run in a thread now (and
    so cannot be interrupted). Used from the pool's threads and from the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[int, list[_Call]] = {}

    def new(self, job_id: int) -> _Call:
        call = _Call()
        with self._lock:
            self._calls.setdefault(job_id, []).append(call)
        return call

    def begin(self, call: _Call) -> bool:
        """In the pool thread: False if the run was interrupted before its call began."""
        with self._lock:
            if call.state == "interrupted":
                return False
            call.state = "running"
            return True

    def end(self, call: _Call) -> None:
        with self._lock:
            call.state = "done"

    def interrupt(self, job_id: int) -> bool:
        """False if ``job_id``'s code runs in a thread now; else its call never begins."""
        with self._lock:
            calls = self._calls.get(job_id, [])
            if any(call.state == "running" for call in calls):
                return False
            for call in calls:
                if call.state == "waiting":
                    call.state = "interrupted"
            return True

    def forget(self, job_id: int, call: _Call) -> None:
        """The run is over (its call may go on in its thread, abandoned)."""
        with self._lock:
            calls = self._calls.get(job_id, [])
            if call in calls:
                calls.remove(call)
            if not calls:
                self._calls.pop(job_id, None)
