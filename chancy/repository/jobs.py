"""One job at a time, by id: read it, cancel it, retry it; and per-queue reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from chancy.jobs import QueuedJob
from chancy.models import state_in
from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.maintenance import retried_values
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import CANCELLED, jobs
from chancy.states import UNFINISHED_STATES, JobState

__all__ = ["JobRepository", "JobTimes"]


class JobTimes(NamedTuple):
    """When a job of a queue started and completed (for the demo's report)."""

    id: int
    priority: int
    started_at: datetime | None
    completed_at: datetime | None


def _cancel_statement() -> sa.Executable:
    """Cancel an unfinished job. A running one is told to stop by the ``finished``
    event; its worker's late outcome is fenced off by the state."""
    cancelled = (
        sa.update(jobs)
        .where(jobs.c.id == sa.bindparam("p_id"), sa.literal_column(state_in(UNFINISHED_STATES)))
        .values(state=CANCELLED, completed_at=sa.func.now(), lease_expires_at=None)
        .returning(*jobs.c)
        .cte("cancelled")
    )
    announced = announce_finished(cancelled)
    return sa.select(*cancelled.c).select_from(cancelled.join(announced, sa.true()))


def _retry_statement() -> sa.Executable:
    """Bring a failed or cancelled job back, ready now, with one more attempt allowed."""
    retried = (
        sa.update(jobs)
        .where(
            jobs.c.id == sa.bindparam("p_id"),
            sa.literal_column(state_in({JobState.FAILED, JobState.CANCELLED})),
        )
        .values(**retried_values())
        .returning(*jobs.c)
        .cte("retried")
    )
    woken = wake_queues(retried)
    return sa.select(*retried.c).select_from(retried.join(woken, sa.true()))


_GET = Statement(
    sa.select(*jobs.c).where(jobs.c.id == sa.bindparam("p_id")), what="reading the job"
)
_CANCEL = Statement(_cancel_statement(), what="cancelling the job")
_RETRY = Statement(_retry_statement(), what="retrying the job")
_COUNT_BY_STATE = Statement(
    sa.select(jobs.c.state, sa.func.count().label("n"))
    .where(jobs.c.queue == sa.bindparam("p_queue"))
    .group_by(jobs.c.state),
    what="counting jobs",
)
_TIMELINE = Statement(
    sa.select(jobs.c.id, jobs.c.priority, jobs.c.started_at, jobs.c.completed_at).where(
        jobs.c.queue == sa.bindparam("p_queue")
    ),
    what="reading jobs",
)


class JobRepository(Repository):
    """Jobs by id, and reads of a queue's jobs."""

    async def get(self, conn: HotExecutable, job_id: int) -> QueuedJob | None:
        """The job with ``job_id``, or None if there is none."""
        return _one(await _GET.rows(conn, {"p_id": job_id}, timeouts=self.timeouts))

    async def cancel(self, conn: HotExecutable, job_id: int) -> QueuedJob | None:
        """Cancel an unfinished job; returns it as cancelled, or None if it was not
        unfinished (unknown, or already finished)."""
        return _one(await _CANCEL.rows(conn, {"p_id": job_id}, timeouts=self.timeouts))

    async def retry(self, conn: HotExecutable, job_id: int) -> QueuedJob | None:
        """Make a failed or cancelled job ready again; None if it was neither."""
        return _one(await _RETRY.rows(conn, {"p_id": job_id}, timeouts=self.timeouts))

    async def count_by_state(self, conn: HotExecutable, queue: str) -> dict[str, int]:
        """How many jobs of ``queue`` are in each state (states with none are absent)."""
        rows = await _COUNT_BY_STATE.rows(conn, {"p_queue": queue}, timeouts=self.timeouts)
        return {str(row["state"]): int(row["n"]) for row in rows}

    async def timeline(self, conn: HotExecutable, queue: str) -> list[JobTimes]:
        """When each job of ``queue`` started and completed."""
        rows = await _TIMELINE.rows(conn, {"p_queue": queue}, timeouts=self.timeouts)
        return [JobTimes(**dict(row)) for row in rows]


def _one(rows: Any) -> QueuedJob | None:
    return QueuedJob.from_row(rows[0]) if rows else None
