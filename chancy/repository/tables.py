"""The tables the statements are built on, and the SQL constants they share.

Constants are rendered as literals, not parameters: they are part of a statement's text
(and must be, for the claim to match its partial index, and the unique push its partial
unique index, at plan time).
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from chancy.models import (
    JobRow,
    LeaderRow,
    QueueRow,
    ScheduleRow,
    WorkerRow,
    WorkflowEdgeRow,
    WorkflowRow,
)
from chancy.states import JobState

__all__ = [
    "BLOCKED",
    "CANCELLED",
    "FAILED",
    "PENDING",
    "RETRYING",
    "RUNNING",
    "SCHEDULED",
    "SECOND",
    "SUCCEEDED",
    "jobs",
    "leader",
    "queues",
    "schedules",
    "workers",
    "workflow_edges",
    "workflows",
]

jobs = cast(sa.Table, JobRow.__table__)
queues = cast(sa.Table, QueueRow.__table__)
schedules = cast(sa.Table, ScheduleRow.__table__)
leader = cast(sa.Table, LeaderRow.__table__)
workers = cast(sa.Table, WorkerRow.__table__)
workflows = cast(sa.Table, WorkflowRow.__table__)
workflow_edges = cast(sa.Table, WorkflowEdgeRow.__table__)

SECOND: sa.ColumnElement[Any] = sa.literal_column("interval '1 second'")


def _state(state: JobState) -> sa.ColumnElement[Any]:
    return sa.literal_column(f"'{state.value}'")


BLOCKED = _state(JobState.BLOCKED)
PENDING = _state(JobState.PENDING)
SCHEDULED = _state(JobState.SCHEDULED)
RUNNING = _state(JobState.RUNNING)
RETRYING = _state(JobState.RETRYING)
SUCCEEDED = _state(JobState.SUCCEEDED)
FAILED = _state(JobState.FAILED)
CANCELLED = _state(JobState.CANCELLED)
