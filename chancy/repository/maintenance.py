"""What the leader does to many jobs at once: rescue expired leases, promote due jobs,
prune finished ones; and bulk retry. Each statement takes a batch (``LIMIT``) with SKIP
LOCKED: it never waits for rows someone else holds, and never holds many locks at once.

Retrying (here in bulk, and one job in :mod:`chancy.repository.jobs`) makes a finished
job unfinished again, so it meets the partial unique index on ``unique_key`` (at most one
unfinished job per key): a job whose key an unfinished job holds (:func:`key_holder`) is
left as it is and reported with that holder, rather than failing the statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from chancy.errors import ChancyError, UniqueKeyHeldError
from chancy.models import state_in
from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.runner import UNIQUE_VIOLATION, HotExecutable, Statement, sqlstate_of
from chancy.repository.tables import FAILED, PENDING, RUNNING, jobs, workflow_edges, workflows
from chancy.states import FINISHED_STATES, UNFINISHED_STATES, WAITING_STATES, JobState

__all__ = [
    "RETRY_BATCH",
    "MaintenanceRepository",
    "RetryBatch",
    "key_holder",
    "key_taken_meanwhile",
    "retried_values",
]

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


def _due_now_statement() -> sa.Executable:
    """Make every scheduled and retrying job of the queues ``p_queues`` ready now,
    whatever its time (:func:`chancy.testing.drain` with ``with_scheduled``)."""
    promoted = (
        sa.update(jobs)
        .where(
            sa.literal_column(state_in(WAITING_STATES)),
            jobs.c.queue == sa.func.any(sa.bindparam("p_queues", type_=ARRAY(sa.Text))),
        )
        .values(state=PENDING, scheduled_at=sa.func.now())
        .returning(jobs.c.id, jobs.c.queue, jobs.c.state)
        .cte("promoted")
    )
    woken = wake_queues(promoted)
    return sa.select(promoted.c.id).select_from(promoted.join(woken, sa.true()))


def _prune_statement() -> sa.Executable:
    """Delete up to ``:limit`` jobs in the finished state ``:state`` completed before
    ``:before``, oldest first, through ``ix_chancy_jobs_finished``. SKIP LOCKED: a row
    someone is touching is left for the next round, so pruning never waits on anyone.
    Returns how many were deleted.

    A step of a workflow that has unfinished steps is kept (its children read its
    result, and the workflow's state is its steps'); once the workflow finished, its steps
    go by the same retention, with their edges, and the workflow's row with its last."""
    sibling = jobs.alias("sibling")
    doomed = (
        sa.select(jobs.c.id, jobs.c.workflow_id)
        .where(
            sa.literal_column(state_in(FINISHED_STATES)),
            jobs.c.state == sa.bindparam("p_state", type_=sa.Text),
            jobs.c.completed_at < sa.bindparam("p_before", type_=sa.DateTime(timezone=True)),
            sa.or_(
                jobs.c.workflow_id.is_(None),
                ~sa.exists().where(
                    sibling.c.workflow_id == jobs.c.workflow_id,
                    sibling.c.state.in_(_literal_states(UNFINISHED_STATES)),
                ),
            ),
        )
        .order_by(jobs.c.completed_at)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(of=jobs, skip_locked=True)
        .cte("doomed")
    )
    deleted = (
        sa.delete(jobs)
        .where(jobs.c.id == doomed.c.id)
        .returning(jobs.c.id, jobs.c.workflow_id)
        .cte("deleted")
    )
    edges = (
        sa.delete(workflow_edges)
        .where(workflow_edges.c.child_id.in_(sa.select(deleted.c.id)))
        .returning(workflow_edges.c.child_id)
        .cte("deleted_edges")
    )
    # Every CTE sees the rows as they were before the statement: the deleted steps too.
    remaining = sa.exists().where(
        sibling.c.workflow_id == workflows.c.id, sibling.c.id.not_in(sa.select(deleted.c.id))
    )
    emptied = (
        sa.delete(workflows)
        .where(workflows.c.id.in_(sa.select(deleted.c.workflow_id)), ~remaining)
        .returning(workflows.c.id)
        .cte("deleted_workflows")
    )
    return sa.select(
        sa.select(sa.func.count()).select_from(deleted).scalar_subquery().label("n"),
        sa.select(sa.func.count()).select_from(edges).scalar_subquery().label("edges"),
        sa.select(sa.func.count()).select_from(emptied).scalar_subquery().label("workflows"),
    )


def _literal_states(states: frozenset[JobState]) -> list[sa.ColumnElement[Any]]:
    """``states`` as literals (sorted), so a partial index's predicate can match them."""
    return [sa.literal_column(f"'{state.value}'") for state in sorted(states)]


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


def key_holder(unique_key: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    """The id of the newest unfinished job holding ``unique_key``; NULL if none does (or
    the key is NULL). The state list is literal, so the partial unique index answers it."""
    holders = jobs.alias("holders")
    unfinished = _literal_states(UNFINISHED_STATES)
    return (
        sa.select(holders.c.id)
        .where(holders.c.unique_key == unique_key, holders.c.state.in_(unfinished))
        .order_by(holders.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _retry_many_statement() -> sa.Executable:
    """Bring back the jobs in state ``:state`` (failed or cancelled), of ``:queue`` or of
    every queue (see :func:`retry_chosen_statement`)."""
    queue = sa.bindparam("p_queue", type_=sa.Text)
    return retry_chosen_statement(
        jobs.c.state == sa.bindparam("p_state", type_=sa.Text),
        sa.or_(queue.is_(None), jobs.c.queue == queue),
    )


def retry_chosen_statement(*conditions: sa.ColumnElement[bool]) -> sa.Executable:
    """Bring back the failed or cancelled jobs that meet ``conditions``, as one retry
    does: up to ``:limit`` of them with ids above ``:after``.

    A job whose unique key an unfinished job holds is left as it is, with that holder
    reported; so is a job whose key a newer job of the same batch has (that one is
    retried and holds it). So no row fails the batch, and the next batch starts after the
    last id seen, skipped or not. One row per job seen: ``id``, ``holder_id`` (NULL when
    retried), ``retried``."""
    retriable: sa.ColumnElement[Any] = sa.literal_column(
        state_in({JobState.FAILED, JobState.CANCELLED})
    )
    chosen = (
        sa.select(jobs.c.id, jobs.c.unique_key)
        .where(
            retriable,
            *conditions,
            jobs.c.id > sa.bindparam("p_after", type_=sa.BigInteger),
        )
        .order_by(jobs.c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    newest_of_key = sa.func.max(chosen.c.id).over(partition_by=chosen.c.unique_key)
    holder = sa.case(
        (chosen.c.unique_key.is_(None), sa.null()),
        else_=sa.func.coalesce(
            key_holder(chosen.c.unique_key), sa.func.nullif(newest_of_key, chosen.c.id)
        ),
    )
    judged = sa.select(chosen.c.id, holder.label("holder_id")).cte("judged")
    retried = (
        sa.update(jobs)
        .where(jobs.c.id == judged.c.id, judged.c.holder_id.is_(None))
        .values(**retried_values())
        .returning(jobs.c.id, jobs.c.state, jobs.c.queue)
        .cte("retried")
    )
    woken = wake_queues(retried)
    return sa.select(
        judged.c.id, judged.c.holder_id, retried.c.id.is_not(None).label("retried")
    ).select_from(judged.outerjoin(retried, retried.c.id == judged.c.id).join(woken, sa.true()))


_RESCUE = Statement(_rescue_statement(), what="rescuing jobs whose lease expired")
_PROMOTE = Statement(_promote_statement(), what="promoting due jobs")
_PRUNE = Statement(_prune_statement(), what="pruning finished jobs")
_DUE_NOW = Statement(_due_now_statement(), what="making waiting jobs ready")
_RETRY_MANY = Statement(_retry_many_statement(), what="retrying jobs")


_UNIQUE_KEY_INDEX = "uq_chancy_jobs_unique_key"


class RetryBatch(NamedTuple):
    """One batch of a bulk retry: how many jobs came back, the jobs left as they were
    because an unfinished job holds their unique key (id to the holder's id), and the
    last id seen (None: no job was left to look at)."""

    retried: int
    skipped: dict[int, int]
    last_id: int | None


@contextlib.contextmanager
def key_taken_meanwhile(job_id: int | None = None) -> Iterator[None]:
    """Raise :class:`UniqueKeyHeldError` (holder unknown) for a retry that met the unique
    index after all: a job with the key was pushed after the statement looked. Running
    the retry again sees that job and names it."""
    try:
        yield
    except DBAPIError as exc:
        if sqlstate_of(exc) != UNIQUE_VIOLATION or _UNIQUE_KEY_INDEX not in str(exc.orig):
            raise
        subject = "a job" if job_id is None else f"job {job_id}"
        raise UniqueKeyHeldError(
            f"{subject} was not retried: a job with its unique key was pushed while it "
            "was being retried; retry again to see which job holds the key",
            job_id=job_id,
        ) from exc


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

    async def make_due_now(self, conn: HotExecutable, queues: Sequence[str]) -> int:
        """Make every scheduled and retrying job of ``queues`` ready now; returns how
        many."""
        return len(await _DUE_NOW.rows(conn, {"p_queues": list(queues)}, timeouts=self.timeouts))

    async def prune_finished_before(
        self, conn: HotExecutable, state: JobState, before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` jobs in the finished ``state`` completed before
        ``before``; returns how many."""
        parameters = {"p_state": state.value, "p_before": before, "p_limit": limit}
        rows = await _PRUNE.rows(conn, parameters, timeouts=self.timeouts)
        return int(rows[0]["n"])

    async def retry_many(
        self,
        conn: HotExecutable,
        state: JobState,
        queue: str | None,
        limit: int = RETRY_BATCH,
        *,
        after: int = 0,
    ) -> RetryBatch:
        """Bring back up to ``limit`` jobs in ``state`` (failed or cancelled) with ids above
        ``after``, of ``queue`` or of every queue, except those whose unique key an
        unfinished job holds (see :func:`_retry_many_statement`). The next batch starts
        after ``last_id``. :class:`UniqueKeyHeldError` if a job with one of their keys was
        pushed meanwhile (nothing changed: run the batch again)."""
        if state not in (JobState.FAILED, JobState.CANCELLED):
            raise ChancyError(f"only failed or cancelled jobs can be retried, not {state.value}")
        parameters = {"p_state": state.value, "p_queue": queue, "p_limit": limit, "p_after": after}
        with key_taken_meanwhile():
            rows = await _RETRY_MANY.rows(conn, parameters, timeouts=self.timeouts)
        return retry_batch(rows)


def retry_batch(rows: Sequence[Any]) -> RetryBatch:
    """The :class:`RetryBatch` of the rows of :func:`retry_chosen_statement`."""
    return RetryBatch(
        retried=sum(1 for row in rows if row["retried"]),
        skipped={row["id"]: row["holder_id"] for row in rows if not row["retried"]},
        last_id=max((row["id"] for row in rows), default=None),
    )
