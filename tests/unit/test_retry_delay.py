"""The delay before a retry: exponential, capped, for any attempt a Job allows."""

from __future__ import annotations

from datetime import UTC, datetime

from chancy.executor import Job
from chancy.jobs import QueuedJob
from chancy.states import JobState
from chancy.worker.outcomes import RETRY_BACKOFF_MAX, RETRY_JITTER, retry_delay
from tests.support import tasks


def test_the_retry_delay_of_a_late_attempt_is_capped_and_computes() -> None:
    # max_attempts takes any int32: the 2,000th attempt's 2 ** 1999 is no float.
    job = Job.from_func(tasks.greet, kwargs={"name": "x"}).with_max_attempts(2**31 - 1)
    fields = {name: getattr(job, name) for name in ("func", "kwargs", "max_attempts")}
    queued = QueuedJob(
        **fields, id=1, state=JobState.RUNNING, attempts=2000, created_at=datetime.now(UTC)
    )
    assert retry_delay(queued) <= RETRY_BACKOFF_MAX * (1 + RETRY_JITTER)
