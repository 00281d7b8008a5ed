"""Where :class:`Job`, :class:`QueuedJob` and :class:`Reference` lived before
:mod:`chancy.jobs`: kept so that existing imports, annotations naming
``chancy.executor.job.QueuedJob``, and jobs pickled by earlier versions still work."""

from chancy.jobs import (
    MAX_ATTEMPTS_DEFAULT,
    PRIORITY_DEFAULT,
    QUEUE_DEFAULT,
    Job,
    QueuedJob,
    Reference,
    _rebuild,
    json_text,
    queued_job_parameter,
)

__all__ = [
    "MAX_ATTEMPTS_DEFAULT",
    "PRIORITY_DEFAULT",
    "QUEUE_DEFAULT",
    "Job",
    "QueuedJob",
    "Reference",
    "_rebuild",
    "json_text",
    "queued_job_parameter",
]
