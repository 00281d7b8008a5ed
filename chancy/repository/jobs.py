"""One job at a time, by id: read it, cancel it, retry it; and per-queue reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, distinct_on

from chancy.errors import UniqueKeyHeldError
from chancy.jobs import QueuedJob
from chancy.models import state_in
from chancy.repository.announce import announce_finished, wake_queues
from chancy.repository.base import Repository
from chancy.repository.maintenance import key_holder, key_taken_meanwhile, retried_values
from chancy.repository.runner import HotExecutable, Statement, SyncExecutable
from chancy.repository.tables import CANCELLED, jobs
from chancy.states import UNFINISHED_STATES, JobState

__all__ = ["JobFilters", "JobRepository", "JobTimes"]


class JobFilters(NamedTuple):
    """What jobs :meth:`JobRepository.matching` reads; None matches anything. ``kwargs``
    is JSON text of an object whose keys the job's kwargs must hold with equal values."""

    func: str | None = None
    queue: str | None = None
    priority: int | None = None
    state: str | None = None
    kwargs: str | None = None

    def parameters(self) -> dict[str, Any]:
        """The statement's parameters."""
        return {f"p_{name}": value for name, value in self._asdict().items()}


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
    """Bring a failed or cancelled job back, ready now, with one more attempt allowed,
    unless an unfinished job holds its unique key. No row: the job is neither failed nor
    cancelled. A row whose ``holder_id`` is set: that job holds the key, and nothing
    changed. Else the retried job's row."""
    target = (
        sa.select(
            jobs.c.id,
            jobs.c.unique_key.label("held_key"),
            key_holder(jobs.c.unique_key).label("holder_id"),
        )
        .where(
            jobs.c.id == sa.bindparam("p_id"),
            sa.literal_column(state_in({JobState.FAILED, JobState.CANCELLED})),
        )
        .with_for_update(of=jobs)
        .cte("target")
    )
    retried = (
        sa.update(jobs)
        .where(jobs.c.id == target.c.id, target.c.holder_id.is_(None))
        .values(**retried_values())
        .returning(*jobs.c)
        .cte("retried")
    )
    woken = wake_queues(retried)
    return sa.select(target.c.holder_id, target.c.held_key, *retried.c).select_from(
        target.outerjoin(retried, sa.true()).join(woken, sa.true())
    )


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
_NEWEST = Statement(
    sa.select(*jobs.c).order_by(jobs.c.id.desc()).limit(sa.bindparam("p_limit")),
    what="reading jobs",
)
_COUNT_ALL = Statement(
    sa.select(sa.func.count().label("n")).select_from(jobs), what="counting jobs"
)


def _matching_statement() -> sa.Executable:
    """Every job that matches the filters a test gives, oldest first; a NULL filter matches
    anything. ``p_kwargs`` (JSON text, or NULL) matches as a subset: each of its keys must
    be in the job's kwargs with an equal JSON value (jsonb equality: 1 and 1.0 are equal,
    true and 1 are not)."""

    def given(name: str, column: sa.ColumnElement[Any], type_: Any) -> sa.ColumnElement[bool]:
        wanted = sa.bindparam(name, type_=type_)
        return sa.or_(wanted.is_(None), column == wanted)

    wanted = (
        sa.func.jsonb_each(sa.cast(sa.bindparam("p_kwargs", type_=sa.Text), JSONB))
        .table_valued("key", "value")
        .render_derived("wanted")
    )
    differing = sa.select(sa.literal(1)).where(
        jobs.c.kwargs.op("->")(wanted.c.key).is_distinct_from(wanted.c.value)
    )
    return (
        sa.select(*jobs.c)
        .where(
            given("p_func", jobs.c.func, sa.Text),
            given("p_queue", jobs.c.queue, sa.Text),
            given("p_priority", jobs.c.priority, sa.Integer),
            given("p_state", jobs.c.state, sa.Text),
            ~sa.exists(differing),
        )
        .order_by(jobs.c.id)
    )


_MATCHING = Statement(_matching_statement(), what="reading jobs")
_READY_HEADS = Statement(
    sa.select(jobs.c.queue, jobs.c.priority, jobs.c.id)
    .ext(distinct_on(jobs.c.queue))
    .where(
        jobs.c.state == sa.literal_column("'pending'"),
        jobs.c.queue == sa.func.any(sa.bindparam("p_queues", type_=ARRAY(sa.Text))),
    )
    .order_by(jobs.c.queue, jobs.c.priority, jobs.c.id),
    what="reading jobs",
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
        """Make a failed or cancelled job ready again; None if it was neither.
        :class:`UniqueKeyHeldError` if an unfinished job holds its unique key (naming that
        job), or if a job with its key was pushed meanwhile (not naming it: retry again)."""
        with key_taken_meanwhile(job_id):
            rows = await _RETRY.rows(conn, {"p_id": job_id}, timeouts=self.timeouts)
        if rows and rows[0]["holder_id"] is not None:
            holder, key = rows[0]["holder_id"], rows[0]["held_key"]
            raise UniqueKeyHeldError(
                f"job {job_id} was not retried: its unique key {_shown(key)} is held by job "
                f"{holder}, which has not finished (at most one unfinished job per key). "
                f"Let job {holder} finish, or cancel it, then retry job {job_id}",
                job_id=job_id,
                holder_id=holder,
            )
        return _one(rows)

    async def newest(self, conn: HotExecutable, limit: int) -> list[QueuedJob]:
        """The ``limit`` newest jobs, newest first (on the caller's connection or session,
        so jobs pushed in its uncommitted transaction are among them)."""
        rows = await _NEWEST.rows(conn, {"p_limit": limit}, timeouts=self.timeouts)
        return [QueuedJob.from_row(row) for row in rows]

    def newest_sync(self, conn: SyncExecutable, limit: int) -> list[QueuedJob]:
        """:meth:`newest` on a synchronous ``Connection`` or ``Session``."""
        rows = _NEWEST.rows_sync(conn, {"p_limit": limit}, timeouts=self.timeouts)
        return [QueuedJob.from_row(row) for row in rows]

    async def count_all(self, conn: HotExecutable) -> int:
        """How many jobs there are, in every queue and state."""
        return int((await _COUNT_ALL.rows(conn, {}, timeouts=self.timeouts))[0]["n"])

    def count_all_sync(self, conn: SyncExecutable) -> int:
        """:meth:`count_all` on a synchronous ``Connection`` or ``Session``."""
        return int(_COUNT_ALL.rows_sync(conn, {}, timeouts=self.timeouts)[0]["n"])

    async def matching(self, conn: HotExecutable, filters: JobFilters) -> list[QueuedJob]:
        """Every job that matches ``filters``, oldest first (on the caller's connection or
        session, so jobs pushed in its uncommitted transaction are among them)."""
        rows = await _MATCHING.rows(conn, filters.parameters(), timeouts=self.timeouts)
        return [QueuedJob.from_row(row) for row in rows]

    def matching_sync(self, conn: SyncExecutable, filters: JobFilters) -> list[QueuedJob]:
        """:meth:`matching` on a synchronous ``Connection`` or ``Session``."""
        rows = _MATCHING.rows_sync(conn, filters.parameters(), timeouts=self.timeouts)
        return [QueuedJob.from_row(row) for row in rows]

    async def queues_by_next_job(self, conn: HotExecutable, queues: Sequence[str]) -> list[str]:
        """Those of ``queues`` with a ready job, in the order their first ready jobs run
        (lowest priority value, then oldest)."""
        rows = await _READY_HEADS.rows(conn, {"p_queues": list(queues)}, timeouts=self.timeouts)
        return [row["queue"] for row in sorted(rows, key=lambda r: (r["priority"], r["id"]))]

    async def count_by_state(self, conn: HotExecutable, queue: str) -> dict[str, int]:
        """How many jobs of ``queue`` are in each state (states with none are absent)."""
        rows = await _COUNT_BY_STATE.rows(conn, {"p_queue": queue}, timeouts=self.timeouts)
        return {str(row["state"]): int(row["n"]) for row in rows}

    async def timeline(self, conn: HotExecutable, queue: str) -> list[JobTimes]:
        """When each job of ``queue`` started and completed."""
        rows = await _TIMELINE.rows(conn, {"p_queue": queue}, timeouts=self.timeouts)
        return [JobTimes(**dict(row)) for row in rows]


_SHOWN_MAX = 80


def _shown(key: str) -> str:
    """``repr(key)``, shortened: a unique key may be long."""
    text = repr(key)
    return text if len(text) <= _SHOWN_MAX else f"{text[: _SHOWN_MAX - 5]}...{text[-1]}"


def _one(rows: Any) -> QueuedJob | None:
    return QueuedJob.from_row(rows[0]) if rows else None
