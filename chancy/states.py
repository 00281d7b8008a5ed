"""The states a job moves through: the vocabulary every other module shares."""

from __future__ import annotations

import enum

__all__ = ["FINISHED_STATES", "UNFINISHED_STATES", "WAITING_STATES", "JobState"]


class JobState(enum.StrEnum):
    """Where a job is in its life.

    ``pending`` jobs are ready to run now; ``scheduled`` jobs wait for their
    ``scheduled_at``, and ``retrying`` jobs for their next attempt after a failure.
    Both become ``pending`` when their time comes. Keeping waiting jobs in states of
    their own keeps them out of the claim index, so millions of future jobs cost a
    claim nothing. ``running`` jobs are held by a worker under a lease.
    ``blocked`` jobs are workflow steps waiting for their parents (:mod:`chancy.workflow`):
    released (``pending``) by the statement that finishes their last parent.
    ``succeeded``, ``failed`` and ``cancelled`` are final.
    """

    BLOCKED = "blocked"
    PENDING = "pending"
    SCHEDULED = "scheduled"
    RETRYING = "retrying"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


WAITING_STATES = frozenset({JobState.SCHEDULED, JobState.RETRYING})
FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
UNFINISHED_STATES = frozenset(JobState) - FINISHED_STATES
