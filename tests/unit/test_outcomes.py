"""Outcomes: whatever a job returned or raised becomes an outcome PostgreSQL can store."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from typing import Any

from chancy.errors import FunctionNotImportableError
from chancy.executor.base import JobExitError, RemoteJobError
from chancy.jobs import QueuedJob
from chancy.states import JobState
from chancy.worker import outcomes


def queued(attempts: int = 1, max_attempts: int = 1) -> QueuedJob:
    return QueuedJob(
        id=7,
        func="tests.support.tasks.record",
        state=JobState.RUNNING,
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=datetime.now(UTC),
    )


def storable(value: Any) -> bool:
    """Whether PostgreSQL's jsonb takes ``value``'s JSON: no NUL, no lone surrogate."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\\u0000" not in text


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_a_result_with_a_nul_character_fails_the_job_saying_why() -> None:
    outcome = outcomes.success(queued(max_attempts=3), {"text": "a\x00b"})
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert "NUL" in outcome.error["message"]
    assert storable(dict(outcome.error))


def test_a_result_with_a_lone_surrogate_fails_the_job_saying_why() -> None:
    outcome = outcomes.success(queued(), ["fine", os.fsdecode(b"\xff")])
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert "surrogate" in outcome.error["message"]
    assert storable(dict(outcome.error))


def test_a_result_with_a_nul_in_a_key_fails_the_job() -> None:
    assert outcomes.success(queued(), {"a\x00": 1}).state is JobState.FAILED


def test_a_result_with_a_backslash_u0000_text_succeeds() -> None:
    outcome = outcomes.success(queued(), "\\u0000 is how JSON writes NUL")
    assert (outcome.state, outcome.result) == (JobState.SUCCEEDED, "\\u0000 is how JSON writes NUL")


def test_an_error_with_a_nul_and_a_surrogate_is_stored_with_them_escaped() -> None:
    outcome = outcomes.failure(queued(), ValueError("a\x00b" + os.fsdecode(b"\xff")))
    assert outcome.error is not None
    assert outcome.error["message"] == "a\\x00b\\udcff"
    assert "a\\x00b\\udcff" in outcome.error["traceback"]
    assert storable(dict(outcome.error))


def test_a_deeply_nested_result_fails_the_job_instead_of_raising() -> None:
    outcome = outcomes.success(queued(), nested(100_000))
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert "nested" in outcome.error["message"]


def test_the_retry_delay_of_a_late_attempt_is_capped_not_overflowing() -> None:
    delay = outcomes.retry_delay(queued(attempts=1025, max_attempts=5000))
    assert 0 < delay <= outcomes.RETRY_BACKOFF_MAX * (1 + outcomes.RETRY_JITTER)


def test_a_failure_of_a_late_attempt_is_a_retry() -> None:
    outcome = outcomes.failure(queued(attempts=5000, max_attempts=6000), ValueError("x"))
    assert outcome.state is JobState.RETRYING


def test_an_error_whose_str_raises_still_makes_an_outcome() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    outcome = outcomes.failure(queued(), Unprintable())
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert outcome.error["type"].endswith("Unprintable")


def test_a_job_that_tried_to_exit_fails_without_a_retry() -> None:
    exc = JobExitError.of(SystemExit(3))
    outcome = outcomes.failure(queued(max_attempts=5), exc)
    assert outcome.state is JobState.FAILED
    assert outcome.error is not None
    assert "tried to exit the worker (SystemExit(3))" in outcome.error["message"]


def test_a_job_that_tried_to_exit_its_child_process_fails_without_a_retry() -> None:
    exc = RemoteJobError("JobExitError", "the job tried to exit the worker (SystemExit(3))", "")
    assert outcomes.failure(queued(max_attempts=5), exc).state is JobState.FAILED


def test_a_function_a_child_process_could_not_import_defers_its_job() -> None:
    exc = RemoteJobError("FunctionNotImportableError", "cannot import", "traceback")
    outcome = outcomes.failure(queued(attempts=1, max_attempts=1), exc)
    assert outcome.state is JobState.SCHEDULED
    assert outcome.error is not None
    assert outcome.error["deferred"] is True


def test_the_delay_of_a_deferral_doubles_up_to_five_minutes() -> None:
    exc = FunctionNotImportableError("cannot import")
    deferred = [{"type": "FunctionNotImportableError", "deferred": True}] * (
        outcomes.DEFERRALS_MAX - 1
    )
    delays = []
    for count in (0, 1, outcomes.DEFERRALS_MAX - 1):
        job = dataclasses.replace(queued(), errors=tuple(deferred[:count]))
        outcome = outcomes.failure(job, exc)
        assert outcome.retry_in is not None
        delays.append(outcome.retry_in)
    assert 7.5 <= delays[0] <= 12.5
    assert 15 <= delays[1] <= 25
    assert 225 <= delays[2] <= 375


def test_failed_attempts_do_not_count_as_deferrals() -> None:
    failed = {"type": "ValueError", "message": "no"}
    job = dataclasses.replace(queued(), errors=(failed,) * outcomes.DEFERRALS_MAX)
    assert outcomes.deferrals(job) == 0
