"""``run_job``: one job run in this process as a worker runs it, without a database."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from chancy.allowed import AllowedFunctions, check_runnable
from chancy.context import Rehearsal
from chancy.errors import ChancyError, ResultNotStorableError
from chancy.executor.coroutines import AsyncioExecutor
from chancy.jobs import Job, QueuedJob, json_text
from chancy.states import JobState
from chancy.worker import outcomes

__all__ = ["RUN_JOB_ID", "queued", "run_job"]

RUN_JOB_ID = 0
"""The id of the :class:`QueuedJob` a job run by :func:`run_job` receives (none is stored)."""


def queued(job: Job, *, job_id: int = RUN_JOB_ID) -> QueuedJob:
    """``job`` as a worker receives it when it starts: running, its first attempt, its
    kwargs and meta as stored (through JSON: a tuple arrives as a list)."""
    fields = {field.name: getattr(job, field.name) for field in dataclasses.fields(Job)}
    fields["kwargs"] = json.loads(json_text(dict(job.kwargs)))
    fields["meta"] = json.loads(json_text(dict(job.meta)))
    now = datetime.now(UTC)
    return QueuedJob(
        **fields,
        id=job_id,
        state=JobState.RUNNING,
        attempts=1,
        created_at=now,
        started_at=now,
    )


async def run_job(
    job_or_func: Job | Callable[..., Any],
    /,
    *,
    allowed: Iterable[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Run one job in this process as a worker would, and return its result (as stored:
    through JSON) or raise what it raised. Needs no database.

    ``job_or_func`` is a :class:`Job`, or a function called with ``kwargs`` (made into a
    job by :meth:`Job.from_func`, which refuses lambdas and closures with
    :class:`~chancy.errors.InvalidFunctionError`). As in a worker: the kwargs go through
    JSON, a keyword-only parameter annotated :class:`QueuedJob` receives the job (id
    ``0``), a plain function runs in a thread, the job's timeout applies
    (:class:`~chancy.executor.JobTimeoutError`), and ``allowed`` patterns (as
    ``Chancy(allowed=...)``), when given, must allow the function. A result that cannot be
    stored raises :class:`~chancy.errors.ResultNotStorableError`, as it fails the job in
    a worker. To run a function with a parameter named ``allowed``, pass a Job.
    """
    if isinstance(job_or_func, Job):
        if kwargs:
            raise ChancyError(
                "run_job(job) takes the job's own kwargs; give them to Job.from_func(fn, "
                "kwargs={...}), or call run_job(fn, **kwargs)"
            )
        job = job_or_func
    else:
        _check_no_allowed_parameter(job_or_func, allowed)
        job = Job.from_func(job_or_func, kwargs=kwargs)
    running = queued(job)
    permitted = AllowedFunctions.of(allowed)
    check_runnable(running, permitted)
    executor = AsyncioExecutor(1, allowed=permitted)
    rehearsal = executor.reporter = Rehearsal()
    await executor.start()
    try:
        result = await executor.run(running)
    finally:
        await executor.stop()
    if rehearsal.completed:
        result = rehearsal.completed_result
    outcome = outcomes.success(running, result)
    if outcome.state is not JobState.SUCCEEDED:
        message = (outcome.error or {}).get("message", "the job's result cannot be stored")
        raise ResultNotStorableError(message)
    return outcome.result


def _check_no_allowed_parameter(fn: Callable[..., Any], allowed: Iterable[str] | None) -> None:
    """``run_job(fn, allowed=...)`` names run_job's patterns, never ``fn``'s argument:
    refuse the call when ``fn`` takes an ``allowed`` too, rather than run it without."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # no signature to read: Job.from_func says what is wrong with fn
    if allowed is not None and "allowed" in parameters:
        raise ChancyError(
            f"run_job(fn, allowed=...) gives run_job its allowed-function patterns, but "
            f"{getattr(fn, '__name__', fn)!r} takes a parameter 'allowed' too; pass its "
            "argument in a Job: run_job(Job.from_func(fn, kwargs={'allowed': ...}), "
            "allowed=[...])"
        )
