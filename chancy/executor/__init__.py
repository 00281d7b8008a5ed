"""Jobs as values, and the executors that run them.

:class:`Job` (what to run) and :class:`QueuedJob` (a job as stored) live in
:mod:`chancy.executor.job`; the executors, one per way of running a function, beside it.
"""

from chancy.executor.job import (
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    Job,
    QueuedJob,
    Reference,
    queued_job_parameter,
)

__all__ = [
    "MAX_ATTEMPTS_DEFAULT",
    "PRIORITY_DEFAULT",
    "QUEUE_DEFAULT",
    "Job",
    "QueuedJob",
    "Reference",
    "queued_job_parameter",
]
