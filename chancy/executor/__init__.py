"""Jobs as values, and the executors that run them.

:class:`Job` (what to run) and :class:`QueuedJob` (a job as stored) live in
:mod:`chancy.executor.job`; the executors, one per way of running a function, beside it.
"""

from chancy.executor.base import Executor
from chancy.executor.coroutines import AsyncioExecutor
from chancy.executor.job import (
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    Job,
    QueuedJob,
    Reference,
    queued_job_parameter,
)
from chancy.executor.processes import ProcessExecutor
from chancy.executor.threads import ThreadExecutor
from chancy.queue import Queue


def executor_for(queue: Queue) -> Executor:
    """A new executor of the kind ``queue.executor`` names, sized to its concurrency."""
    if queue.executor == "threads":
        return ThreadExecutor(queue.concurrency)
    if queue.executor == "processes":
        return ProcessExecutor(queue.concurrency, memory_limit=queue.memory_limit)
    return AsyncioExecutor(queue.concurrency)


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
