"""The executors, one per way of running a job's function: asyncio (coroutines on the
worker's loop), threads (sync functions) and processes (isolation, hard timeouts, memory
limits).

:class:`Job`, :class:`QueuedJob` and :class:`Reference` live in :mod:`chancy.jobs`; they
are re-exported here, where the first examples imported them from
(``from chancy.executor import Job``).
"""

from chancy.allowed import UNRESTRICTED, AllowedFunctions
from chancy.executor.base import Executor
from chancy.executor.coroutines import AsyncioExecutor
from chancy.executor.processes import ProcessExecutor
from chancy.executor.threads import ThreadExecutor
from chancy.jobs import (
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    Job,
    QueuedJob,
    Reference,
    queued_job_parameter,
)
from chancy.queue import Queue


def executor_for(queue: Queue, *, allowed: AllowedFunctions = UNRESTRICTED) -> Executor:
    """A new executor of the kind ``queue.executor`` names, sized to its concurrency, that
    runs only the functions ``allowed`` allows (default: any)."""
    if queue.executor == "threads":
        return ThreadExecutor(queue.concurrency, allowed=allowed)
    if queue.executor == "processes":
        return ProcessExecutor(queue.concurrency, memory_limit=queue.memory_limit, allowed=allowed)
    return AsyncioExecutor(queue.concurrency, allowed=allowed)


__all__ = [
    "MAX_ATTEMPTS_DEFAULT",
    "PRIORITY_DEFAULT",
    "QUEUE_DEFAULT",
    "AsyncioExecutor",
    "Executor",
    "Job",
    "ProcessExecutor",
    "QueuedJob",
    "Reference",
    "ThreadExecutor",
    "executor_for",
    "queued_job_parameter",
]
