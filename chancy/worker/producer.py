"""One producer per queue: claims jobs into free slots and runs them on the executor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from chancy.executor.base import Executor
from chancy.jobs import QueuedJob
from chancy.queue import Queue
from chancy.repository import Attempt

__all__ = ["Producer"]

log = logging.getLogger("chancy.worker")

Claim = Callable[[str, int], Awaitable[list[QueuedJob]]]
RunJob = Callable[[QueuedJob, Executor], Coroutine[Any, Any, None]]
POLL_JITTER = 0.2
CLAIM_RETRY_DELAY_MAX = 5.0


class Producer:
    """Keeps ``queue.concurrency`` jobs running, never more.

    Each claim asks for exactly the free slots, in one statement. When a claim fills every
    slot the queue probably has more, so each slot is refilled as soon as it frees;
    otherwise the producer sleeps until a ``pushed`` notification for its queue, or the
    polling interval (with jitter) as a fallback for a lost notification.

    :attr:`running` changes on the worker's loop only; :attr:`attempts` may be read from
    any thread (the heartbeat's, while a job blocks the loop).
    """

    def __init__(self, queue: Queue, executor: Executor, claim: Claim, run_job: RunJob) -> None:
        self.queue = queue
        self.executor = executor
        self._claim = claim
        self._run_job = run_job
        self.running: dict[int, tuple[QueuedJob, asyncio.Task[None]]] = {}
        self._running_lock = threading.Lock()  # held to change running, or to copy it elsewhere
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._claiming = False

    @property
    def attempts(self) -> list[Attempt]:
        """The attempts running now; safe to read from any thread."""
        with self._running_lock:
            jobs = [job for job, _task in self.running.values()]
        return [Attempt(job.id, job.fence) for job in jobs]

    def notify(self) -> None:
        """Jobs may be ready in this queue: claim at the next free slot."""
        self._work.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"chancy-producer-{self.queue.name}")

    async def stop_claiming(self) -> None:
        """Claim no more; running jobs go on. A claim in flight is finished, not cut off:
        its jobs would otherwise be held by no one until their leases expired."""
        self._closing = True
        task, self._task = self._task, None
        if task is None:
            return
        if not self._claiming:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        delay = 0.1
        while not self._closing:
            await self._capacity.wait()
            self._work.clear()
            free = self.queue.concurrency - len(self.running)
            self._claiming = True
            try:
                jobs = await self._claim(self.queue.name, free)
                delay = 0.1
            except Exception as exc:
                log.warning("claiming from %r failed (%s); retrying", self.queue.name, exc)
                jobs = []
                await asyncio.sleep(delay)
                delay = min(delay * 2, CLAIM_RETRY_DELAY_MAX)
                continue
            finally:
                self._claiming = False
            for job in jobs:
                self._start(job)
            if len(jobs) < free and not self._closing:
                await self._sleep()

    async def _sleep(self) -> None:
        interval = self.queue.polling_interval * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout=interval)

    def _start(self, job: QueuedJob) -> None:
        earlier = self.running.get(job.id)
        if earlier is not None:
            # This worker lost the job (its lease expired) and claimed it again while the
            # lost run was still going: stop that run; its outcome would be refused anyway.
            log.warning("job %d was claimed again; stopping its earlier run", job.id)
            earlier[1].cancel()
        task = asyncio.create_task(self._run_job(job, self.executor), name=f"chancy-job-{job.id}")
        with self._running_lock:
            self.running[job.id] = (job, task)
        if len(self.running) >= self.queue.concurrency:
            self._capacity.clear()
        task.add_done_callback(lambda done: self._finished(job.id, done))

    def _finished(self, job_id: int, task: asyncio.Task[None]) -> None:
        entry = self.running.get(job_id)
        if entry is not None and entry[1] is task:  # not a later run of the same job
            with self._running_lock:
                del self.running[job_id]
        self._capacity.set()
