"""What the leader does to many jobs at once: rescue expired leases, promote due jobs,
prune finished ones; and bulk retry. Each statement takes a batch (``LIMIT``) with SKIP
LOCKED: it never waits for rows someone else holds, and never holds many locks at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from chancy.errors import ChancyError
from chancy.models import state_in
from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import FAILED, PENDING, RUNNING, jobs
from chancy.states import FINISHED_STATES, WAITING_STATES, JobState

__all__ = ["RETRY_BATCH", "MaintenanceRepository", "retried_values"]

RETRY_BATCH = 10_000


def _rescue_statement() -> sa.Executable:
    """Take back running jobs whose lease expired (their worker died, froze or lost the
    network): ready again if attempts remain, else ``failed``; the lost attempt is
    recorded in ``errors``."""
    expired = (
        sa.select(jobs.c.id)
        .where(jobs.c.state == RUNNING, jobs.c.lease_expires_at < sa.func.now())
        .order_by(jobs.c.lease_expires_at)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    exhausted = jobs.c.attempts >= jobs.c.max_attempts
    lost = sa.func.jsonb_build_object(
        "at",
        sa.func.now(),
        "attempt",
        jobs.c.attempts,
        "type",
        "LeaseExpired",
        "message",
        sa.func.concat(
            "the worker ",
            sa.func.coalesce(jobs.c.worker_id, "?"),
            " stopped renewing its lease (it died, froze or lost its connection)",
        ),
        "traceback",
        None,
    )
    rescued = (
        sa.update(jobs)
        .where(jobs.c.id == expired.c.id)
        .values(
            state=sa.case((exhausted, FAILED), else_=PENDING),
            completed_at=sa.case((exhausted, sa.func.now()), else_=None),
            lease_expires_at=None,
            worker_id=None,
            errors=jobs.c.errors.op("||")(sa.func.jsonb_build_array(lost)),
        )
        .returning(jobs.c.id, jobs.c.queue, jobs.c.state)
        .cte("rescued")
    )
    woken, announced = wake_queues(rescued), announce_finished(rescued)
    return sa.select(rescued.c.id, rescued.c.state).select_from(
        rescued.join(woken, sa.true()).join(announced, sa.true())
    )


def _promote_statement() -> sa.Executable:
    """Make scheduled and retrying jobs whose time has come ready, oldest first."""
    due = (
        sa.select(jobs.c.id)
        .where(sa.literal_column(state_in(WAITING_STATES)), jobs.c.scheduled_at <= sa.func.now())
        .order_by(jobs.c.scheduled_at)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    promoted = (
        sa.update(jobs)
        .where(jobs.c.id == due.c.id)
        .values(state=PENDING)
        .returning(jobs.c.id, jobs.c.queue, jobs.c.state)
        .cte("promoted")
    )
    woken = wake_queues(promoted)
    return sa.select(promoted.c.id).select_from(promoted.join(woken, sa.true()))


def _prune_statement() -> sa.Executable:
    """Delete up to ``:limit`` jobs in the finished state ``:state`` completed before
    ``:before``, oldest first, through ``ix_chancy_jobs_finished``. SKIP LOCKED: a row
    someone is touching is left for the next round, so pruning never waits on anyone.
    Returns how many were deleted."""
    doomed = (
        sa.select(jobs.c.id)
        .where(
            sa.literal_column(state_in(FINISHED_STATES)),
            jobs.c.state == sa.bindparam("p_state", type_=sa.Text),
            jobs.c.completed_at < sa.bindparam("p_before", type_=sa.DateTime(timezone=True)),
        )
        .order_by(jobs.c.completed_at)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("doomed")
    )
    deleted = sa.delete(jobs).where(jobs.c.id == doomed.c.id).returning(jobs.c.id).cte("deleted")
    return sa.select(sa.func.count().label("n")).select_from(deleted)


def retried_values() -> dict[str, Any]:
    """What retrying a failed or cancelled job changes: ready now, its result cleared,
    with one more attempt allowed (its errors stay)."""
    return {
        "state": PENDING,
        "completed_at": None,
        "result": None,
        "scheduled_at": sa.func.now(),
        "max_attempts": sa.func.greatest(jobs.c.max_attempts, jobs.c.attempts + 1),
    }


def _retry_many_statement() -> sa.Executable:
    """Bring back up to ``:limit`` jobs in state ``:state`` (failed or cancelled), of
    ``:queue`` or of every queue, as one retry does. Returns how many."""
    queue = sa.bindparam("p_queue", type_=sa.Text)
    chosen = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.state == sa.bindparam("p_state", type_=sa.Text),
            sa.or_(queue.is_(None), jobs.c.queue == queue),
        )
        .order_by(jobs.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    retried = (
        sa.update(jobs)
        .where(jobs.c.id == chosen.c.id)
        .values(**retried_values())
        .returning(jobs.c.id, jobs.c.state, jobs.c.queue)
        .cte("retried")
    )
    woken = wake_queues(retried)
    return sa.select(sa.func.count(retried.c.id).label("n")).select_from(
        retried.join(woken, sa.true())
    )


_RESCUE = Statement(_rescue_statement(), what="rescuing jobs whose lease expired")
_PROMOTE = Statement(_promote_statement(), what="promoting due jobs")
_PRUNE = Statement(_prune_statement(), what="pruning finished jobs")
_RETRY_MANY = Statement(_retry_many_statement(), what="retrying jobs")


class MaintenanceRepository(Repository):
    """Batches of jobs moved or deleted by the leader's services and by bulk retry."""

    async def rescue_expired_many(self, conn: HotExecutable, limit: int) -> dict[int, JobState]:
        """Take back up to ``limit`` running jobs whose lease expired; returns each
        rescued id with its new state (``pending``, or ``failed`` when out of attempts)."""
        rows = await _RESCUE.rows(conn, {"p_limit": limit}, timeouts=self.timeouts)
        return {row["id"]: JobState(row["state"]) for row in rows}

    async def promote_due_many(self, conn: HotExecutable, limit: int) -> int:
        """Make up to ``limit`` scheduled or retrying jobs whose time came ready; returns
        how many."""
        return len(await _PROMOTE.rows(conn, {"p_limit": limit}, timeouts=self.timeouts))

    async def prune_finished_before(
        self, conn: HotExecutable, state: JobState, before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` jobs in the finished ``state`` completed before
        ``before``; returns how many."""
        parameters = {"p_state": state.value, "p_before": before, "p_limit": limit}
        rows = await _PRUNE.rows(conn, parameters, timeouts=self.timeouts)
        return int(rows[0]["n"])

    async def retry_many(
        self, conn: HotExecutable, state: JobState, queue: str | None, limit: int = RETRY_BATCH
    ) -> int:
        """Bring back up to ``limit`` jobs in ``state`` (failed or cancelled), of ``queue``
        or of every queue; returns how many."""
        if state not in (JobState.FAILED, JobState.CANCELLED):
            raise ChancyError(f"only failed or cancelled jobs can be retried, not {state.value}")
        parameters = {"p_state": state.value, "p_queue": queue, "p_limit": limit}
        rows = await _RETRY_MANY.rows(conn, parameters, timeouts=self.timeouts)
        return int(rows[0]["n"]) if rows else 0
