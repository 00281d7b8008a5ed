"""Turning how a run ended into the :class:`~chancy.repository.Outcome` to store.

A job that returned succeeds with its return value as ``result`` (it must be JSON). A job
that raised is retried while it has attempts left, after an exponential backoff with
jitter (``Job.with_backoff`` sets the first delay, default 1 s, doubled per attempt, at
most an hour); after its last attempt it fails. Every failed attempt's error is kept.
A job the worker refused to run (its function is not allowed, or its row is corrupt) fails
at once, whatever attempts it has left: running it again would be refused again.
"""

from __future__ import annotations

import json
import random
from typing import Any

from chancy.errors import CorruptJobError, FunctionNotAllowedError
from chancy.executor.base import RemoteJobError, describe_exception
from chancy.jobs import QueuedJob, json_text
from chancy.repository import Outcome
from chancy.states import JobState

__all__ = [
    "RETRY_BACKOFF_DEFAULT",
    "RETRY_BACKOFF_MAX",
    "failure",
    "is_refusal",
    "retry_delay",
    "success",
]

RETRY_BACKOFF_DEFAULT = 1.0
RETRY_BACKOFF_MAX = 3600.0
RETRY_JITTER = 0.25
_DOUBLINGS_MAX = 1023  # the largest power of two a float holds (a product may be inf)
REFUSALS = (FunctionNotAllowedError, CorruptJobError)
"""Errors of jobs a worker refused to run; never retried."""
_REFUSAL_NAMES = frozenset(error.__qualname__ for error in REFUSALS)


def success(job: QueuedJob, result: Any) -> Outcome:
    """The outcome of a run that returned ``result``; a result that is not JSON fails the
    job (without a retry: it would not become JSON by running again)."""
    if result is None:
        return Outcome(job.id, job.attempts, JobState.SUCCEEDED)
    try:
        text = json_text(result)
    except (TypeError, ValueError) as exc:
        message = (
            f"the job returned a {type(result).__name__}, which cannot be stored as JSON "
            f"({exc}); return str, int, float, bool, None, or lists and dicts of them"
        )
        error = {"attempt": job.attempts, "type": "ResultNotJSON", "message": message}
        return Outcome(job.id, job.attempts, JobState.FAILED, error=error)
    return Outcome(
        job.id, job.attempts, JobState.SUCCEEDED, result=json.loads(text), result_json=text
    )


def failure(job: QueuedJob, exc: BaseException, *, worker_id: str | None = None) -> Outcome:
    """The outcome of a run that raised ``exc``: a retry if attempts remain, else failed;
    failed at once if the worker refused to run the job (:func:`is_refusal`)."""
    error: dict[str, Any] = {"attempt": job.attempts, **describe_exception(exc)}
    if worker_id is not None:
        error["worker"] = worker_id
    if job.attempts < job.max_attempts and not is_refusal(exc):
        return Outcome(
            job.id, job.attempts, JobState.RETRYING, error=error, retry_in=retry_delay(job)
        )
    return Outcome(job.id, job.attempts, JobState.FAILED, error=error)


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` says the job must not run (so must not be retried), also when it
    comes back from a child process of the ``processes`` executor."""
    if isinstance(exc, RemoteJobError):
        return exc.type_name in _REFUSAL_NAMES
    return isinstance(exc, REFUSALS)


def retry_delay(job: QueuedJob) -> float:
    """Seconds before the next attempt: ``backoff * 2 ** (attempts - 1)``, capped, ±25 %."""
    base = RETRY_BACKOFF_DEFAULT if job.backoff is None else job.backoff
    # 2 ** attempts of a late attempt is no float (and slow): cap the exponent.
    doublings = min(max(job.attempts - 1, 0), _DOUBLINGS_MAX)
    delay = min(base * 2.0**doublings, RETRY_BACKOFF_MAX)
    return float(delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
