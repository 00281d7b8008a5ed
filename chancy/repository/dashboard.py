"""What the dashboard reads and does in bulk: pages of jobs (keyset, newest first),
counts per queue and state (estimated on large tables), finished jobs per minute, the
schedules, and retry or cancel of every job a filter matches, in batches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from chancy.jobs import QueuedJob
from chancy.models import state_in
from chancy.repository.announce import announce_finished
from chancy.repository.base import Repository
from chancy.repository.maintenance import (
    RetryBatch,
    key_taken_meanwhile,
    retry_batch,
    retry_chosen_statement,
)
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import CANCELLED, PENDING, jobs, schedules
from chancy.states import FINISHED_STATES, UNFINISHED_STATES

__all__ = [
    "COUNT_EXACT_MAX_DEFAULT",
    "DashboardRepository",
    "JobListFilters",
    "JobSummary",
    "QueueCounts",
    "RawJson",
    "ScheduleInfo",
]

COUNT_EXACT_MAX_DEFAULT = 100_000
"""Above this many rows (by the planner's statistics) counts are estimated, not counted."""


class JobListFilters(NamedTuple):
    """A filter on the jobs list; None (or empty) matches anything. ``q`` matches a job's
    id (when it is a number), or part of its function's name or of its unique key."""

    state: str | None = None
    queue: str | None = None
    func: str | None = None
    q: str | None = None

    def parameters(self) -> dict[str, Any]:
        q = (self.q or "").strip()
        like = None
        if q:
            like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return {
            "p_state": self.state or None,
            "p_queue": self.queue or None,
            "p_func": self.func or None,
            "p_like": like,
            "p_q_id": int(q) if q.isascii() and q.isdigit() and len(q) < 19 else None,
        }


class RawJson(str):
    """A stored JSON value as its text: nested deeper than Python decodes."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class JobSummary:
    """A job as a row of the jobs list (no kwargs, errors or result)."""

    id: int
    queue: str
    func: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    created_at: datetime
    scheduled_at: datetime
    completed_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class QueueCounts:
    """A queue's jobs by state (``estimated``: from the planner's statistics), the time
    its oldest ready job became ready, and its finished jobs per minute over the last
    hour (oldest minute first)."""

    counts: dict[str, int]
    estimated: bool
    oldest_pending: datetime | None = None
    per_minute: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A stored cron schedule."""

    name: str
    cron: str
    timezone: str
    func: str
    queue: str
    next_run_at: datetime
    last_run_at: datetime | None


def _filtered() -> list[sa.ColumnElement[bool]]:
    """The conditions of :class:`JobListFilters` (its :meth:`~JobListFilters.parameters`)."""

    def given(name: str, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        wanted = sa.bindparam(name, type_=sa.Text)
        return sa.or_(wanted.is_(None), column == wanted)

    like = sa.bindparam("p_like", type_=sa.Text)
    q_id = sa.bindparam("p_q_id", type_=sa.BigInteger)
    return [
        given("p_state", jobs.c.state),
        given("p_queue", jobs.c.queue),
        given("p_func", jobs.c.func),
        sa.or_(
            like.is_(None),
            jobs.c.id == q_id,
            jobs.c.func.ilike(like, escape="\\"),
            jobs.c.unique_key.ilike(like, escape="\\"),
        ),
    ]


_SUMMARY = (
    jobs.c.id,
    jobs.c.queue,
    jobs.c.func,
    jobs.c.state,
    jobs.c.priority,
    jobs.c.attempts,
    jobs.c.max_attempts,
    jobs.c.created_at,
    jobs.c.scheduled_at,
    jobs.c.completed_at,
)
_AFTER = sa.bindparam("p_after", type_=sa.BigInteger)
_LIMIT = sa.bindparam("p_limit", type_=sa.Integer)

# Newest first by id, from below ``:before`` (NULL: from the newest): keyset, never OFFSET.
_PAGE = Statement(
    sa.select(*_SUMMARY)
    .where(
        *_filtered(),
        sa.or_(
            sa.bindparam("p_before", type_=sa.BigInteger).is_(None),
            jobs.c.id < sa.bindparam("p_before", type_=sa.BigInteger),
        ),
    )
    .order_by(jobs.c.id.desc())
    .limit(_LIMIT),
    what="reading jobs",
)
_COUNT_EXACT = Statement(
    sa.select(jobs.c.queue, jobs.c.state, sa.func.count().label("n")).group_by(
        jobs.c.queue, jobs.c.state
    ),
    what="counting jobs",
)
# The planner's own estimate: the table's rows, and the share of each common value.
_ROWS_ESTIMATE = Statement(
    sa.text("SELECT reltuples AS n FROM pg_class WHERE oid = to_regclass('chancy_jobs')"),
    what="estimating the number of jobs",
)
_STATS = Statement(
    sa.text(
        "SELECT attname, most_common_vals::text::text[] AS vals, most_common_freqs AS freqs "
        "FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'chancy_jobs' "
        "AND attname IN ('queue', 'state')"
    ),
    what="estimating the number of jobs",
)
_OLDEST_PENDING = Statement(
    sa.select(jobs.c.queue, sa.func.min(jobs.c.scheduled_at).label("since"))
    .where(jobs.c.state == PENDING)
    .group_by(jobs.c.queue),
    what="reading the oldest ready jobs",
)
# The predicate is the finished index's own, so the last hour is read from that index.
_MINUTES = sa.func.date_trunc("minute", jobs.c.completed_at)
_PER_MINUTE = Statement(
    sa.select(
        jobs.c.queue,
        sa.func.floor(
            sa.func.extract("epoch", sa.func.date_trunc("minute", sa.func.now()) - _MINUTES) / 60
        ).label("ago"),
        sa.func.count().label("n"),
    )
    .where(
        sa.literal_column(state_in(FINISHED_STATES)),
        jobs.c.completed_at
        > sa.func.date_trunc("minute", sa.func.now()) - sa.text("interval '59 minutes'"),
    )
    .group_by(jobs.c.queue, sa.literal_column("ago")),
    what="counting finished jobs",
)
_NOW = Statement(sa.select(sa.func.now().label("now")), what="reading the time")
_SCHEDULES = Statement(
    sa.select(*schedules.c).order_by(schedules.c.next_run_at, schedules.c.name),
    what="reading the schedules",
)


def _cancel_chosen_statement() -> sa.Executable:
    """Cancel up to ``:limit`` unfinished jobs that match the filter, with ids above
    ``:after`` (rows others hold are skipped: a worker writing an outcome). One row per
    cancelled job; ``last_id``, the highest id chosen, to start the next batch after."""
    chosen = (
        sa.select(jobs.c.id)
        .where(sa.literal_column(state_in(UNFINISHED_STATES)), *_filtered(), jobs.c.id > _AFTER)
        .order_by(jobs.c.id)
        .limit(_LIMIT)
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    cancelled = (
        sa.update(jobs)
        .where(jobs.c.id == chosen.c.id)
        .values(state=CANCELLED, completed_at=sa.func.now(), lease_expires_at=None)
        .returning(jobs.c.id, jobs.c.state)
        .cte("cancelled")
    )
    announced = announce_finished(cancelled)
    return sa.select(
        sa.select(sa.func.max(chosen.c.id)).scalar_subquery().label("last_id"),
        sa.select(sa.func.count()).select_from(cancelled).scalar_subquery().label("n"),
    ).select_from(announced)


# Only a finished job is deleted: a waiting one is cancelled first, a running one never.
_JSON_COLUMNS = ("kwargs", "meta", "result", "errors")
# The job with its JSON columns as text, decoded one by one (see job_as_stored).
_JOB_AS_STORED = Statement(
    sa.select(
        *(column for column in jobs.c if column.name not in _JSON_COLUMNS),
        *(sa.cast(jobs.c[name], sa.Text).label(name) for name in _JSON_COLUMNS),
    ).where(jobs.c.id == sa.bindparam("p_id", type_=sa.BigInteger)),
    what="reading the job",
)
_DELETE_FINISHED = Statement(
    sa.delete(jobs)
    .where(jobs.c.id == sa.bindparam("p_id"), sa.literal_column(state_in(FINISHED_STATES)))
    .returning(jobs.c.id),
    what="deleting the job",
)
_CANCEL_MATCHING = Statement(_cancel_chosen_statement(), what="cancelling jobs")
_RETRY_MATCHING = Statement(retry_chosen_statement(*_filtered()), what="retrying jobs")


class DashboardRepository(Repository):
    """The dashboard's reads, and its bulk actions on filtered jobs."""

    async def now(self, conn: HotExecutable) -> datetime:
        """The database's clock (ages on the pages are counted by it)."""
        rows = await _NOW.rows(conn, {}, timeouts=self.timeouts)
        now: datetime = rows[0]["now"]
        return now

    async def page(
        self, conn: HotExecutable, filters: JobListFilters, *, before: int | None, limit: int
    ) -> list[JobSummary]:
        """Up to ``limit`` jobs matching ``filters`` with ids below ``before``, newest first."""
        parameters = {**filters.parameters(), "p_before": before, "p_limit": limit}
        rows = await _PAGE.rows(conn, parameters, timeouts=self.timeouts)
        return [JobSummary(**dict(row)) for row in rows]

    async def counts(
        self, conn: HotExecutable, *, exact_max: int = COUNT_EXACT_MAX_DEFAULT
    ) -> dict[str, QueueCounts]:
        """Each queue's jobs by state: counted while the table holds at most ``exact_max``
        rows (or has no statistics yet), else estimated as the planner does."""
        rows = await _ROWS_ESTIMATE.rows(conn, {}, timeouts=self.timeouts)
        total = float(rows[0]["n"]) if rows else 0.0
        if total > exact_max:
            stats = await _STATS.rows(conn, {}, timeouts=self.timeouts)
            if len(stats) == 2:
                return _estimated(total, stats)
        found: dict[str, dict[str, int]] = {}
        for row in await _COUNT_EXACT.rows(conn, {}, timeouts=self.timeouts):
            found.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
        return {queue: QueueCounts(counts, estimated=False) for queue, counts in found.items()}

    async def oldest_pending(self, conn: HotExecutable) -> dict[str, datetime]:
        """When each queue's oldest ready job became ready."""
        rows = await _OLDEST_PENDING.rows(conn, {}, timeouts=self.timeouts)
        return {row["queue"]: row["since"] for row in rows}

    async def finished_per_minute(self, conn: HotExecutable) -> dict[str, tuple[int, ...]]:
        """Each queue's jobs finished in each of the last 60 minutes, oldest first (the
        current minute last)."""
        rows = await _PER_MINUTE.rows(conn, {}, timeouts=self.timeouts)
        minutes: dict[str, list[int]] = {}
        for row in rows:
            ago = int(row["ago"])
            if 0 <= ago < 60:
                minutes.setdefault(row["queue"], [0] * 60)[59 - ago] = int(row["n"])
        return {queue: tuple(counts) for queue, counts in minutes.items()}

    async def schedules(self, conn: HotExecutable) -> list[ScheduleInfo]:
        """Every stored cron schedule, the next due first."""
        rows = await _SCHEDULES.rows(conn, {}, timeouts=self.timeouts)
        return [
            ScheduleInfo(
                name=row["name"],
                cron=row["cron"],
                timezone=row["timezone"],
                func=str(row["job"].get("func", "")),
                queue=str(row["job"].get("queue", "")),
                next_run_at=row["next_run_at"],
                last_run_at=row["last_run_at"],
            )
            for row in rows
        ]

    async def job_as_stored(self, conn: HotExecutable, job_id: int) -> QueuedJob | None:
        """The job, whose JSON values nested deeper than Python decodes are
        :class:`RawJson` (errors: none) instead of failing the whole read."""
        rows = await _JOB_AS_STORED.rows(conn, {"p_id": job_id}, timeouts=self.timeouts)
        if not rows:
            return None
        row = dict(rows[0])
        for name in _JSON_COLUMNS:
            row[name] = _decoded(row[name])
        if isinstance(row["errors"], RawJson):
            row["errors"] = []
        return QueuedJob.from_row(row)

    async def delete_finished(self, conn: HotExecutable, job_id: int) -> bool:
        """Delete the job if it is finished; whether it was."""
        return bool(await _DELETE_FINISHED.rows(conn, {"p_id": job_id}, timeouts=self.timeouts))

    async def cancel_matching_many(
        self, conn: HotExecutable, filters: JobListFilters, *, after: int, limit: int
    ) -> tuple[int, int | None]:
        """Cancel up to ``limit`` unfinished jobs matching ``filters`` with ids above
        ``after``; returns how many, and the id to start the next batch after (None:
        none was left)."""
        parameters = {**filters.parameters(), "p_after": after, "p_limit": limit}
        rows = await _CANCEL_MATCHING.rows(conn, parameters, timeouts=self.timeouts)
        return int(rows[0]["n"]), rows[0]["last_id"]

    async def retry_matching_many(
        self, conn: HotExecutable, filters: JobListFilters, *, after: int, limit: int
    ) -> RetryBatch:
        """Bring back up to ``limit`` failed or cancelled jobs matching ``filters`` with
        ids above ``after`` (see :meth:`MaintenanceRepository.retry_many`)."""
        parameters = {**filters.parameters(), "p_after": after, "p_limit": limit}
        with key_taken_meanwhile():
            rows = await _RETRY_MATCHING.rows(conn, parameters, timeouts=self.timeouts)
        return retry_batch(rows)


def _decoded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        return RawJson(text)


def _estimated(total: float, stats: Sequence[Any]) -> dict[str, QueueCounts]:
    """Counts by queue and state as the planner estimates them: the table's rows times
    the share of the queue times the share of the state (the columns taken as
    independent; values too rare to be among the common ones are left out)."""
    shares = {
        row["attname"]: dict(zip(row["vals"] or (), row["freqs"] or (), strict=False))
        for row in stats
    }
    return {
        queue: QueueCounts(
            {
                state: round(total * queue_share * state_share)
                for state, state_share in shares["state"].items()
                if round(total * queue_share * state_share) > 0
            },
            estimated=True,
        )
        for queue, queue_share in shares["queue"].items()
    }
