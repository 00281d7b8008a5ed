"""chancy's tables as SQLAlchemy mapped classes.

The classes are public so an application can query its jobs with its own ORM session::

    from chancy.models import JobRow
    failed = await session.scalars(select(JobRow).where(JobRow.state == "failed"))

Write to them only through :class:`chancy.app.Chancy`: the state machine and the fencing
of running jobs live in :mod:`chancy.repository`. All tables share :data:`metadata`, whose
naming convention gives every constraint and index a stable name for Alembic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    MetaData,
    Text,
    event,
    literal_column,
    text,
)
from sqlalchemy import (
    func as sql_func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chancy.schema_functions import RELEASE_STEPS_V1
from chancy.states import FINISHED_STATES, UNFINISHED_STATES, WAITING_STATES, JobState

__all__ = [
    "TABLE_PREFIX",
    "Base",
    "JobRow",
    "LeaderRow",
    "QueueRow",
    "ScheduleRow",
    "WorkerRow",
    "WorkflowEdgeRow",
    "WorkflowRow",
    "metadata",
    "state_in",
]

TABLE_PREFIX = "chancy_"
"""What every table chancy owns is named with (not a setting: the names are fixed, and
the limited claim's SQL spells them out). The Alembic recipe and the migration checks
tell chancy's tables from the application's by it."""

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
JsonObject = Annotated[dict[str, Any], mapped_column(JSONB)]


def state_in(states: frozenset[JobState] | set[JobState]) -> str:
    """A SQL predicate on ``state``, for partial indexes and checks (sorted: stable DDL)."""
    return "state IN (" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


class Base(DeclarativeBase):
    """The declarative base of chancy's tables."""

    metadata = metadata


class JobRow(Base):
    """One job: what to run, its state, and the history of its attempts.

    ``id`` comes from an identity sequence, so equal priorities run in the order the
    database received the jobs. ``attempts`` counts the attempts started; ``fence`` is the
    fencing token of the current one, a random number drawn at each claim: every write
    about a running job names it, so a write from an attempt that lost its job changes
    nothing (random, not a counter, so that a claim lost in a server crash cannot make
    the next claim hand out the same token again).
    """

    __tablename__ = "chancy_jobs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # A job's queue must be declared (a row of chancy_queues): a typo fails at push. The
    # push statement checks it (no foreign key: that cost a check per row).
    queue: Mapped[str] = mapped_column(Text)
    func: Mapped[str] = mapped_column(Text)
    kwargs: Mapped[JsonObject] = mapped_column(server_default=text("'{}'::jsonb"))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    state: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    scheduled_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    created_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    started_at: Mapped[Timestamp | None]
    completed_at: Mapped[Timestamp | None]
    lease_expires_at: Mapped[Timestamp | None]
    worker_id: Mapped[str | None] = mapped_column(Text)
    unique_key: Mapped[str | None] = mapped_column(Text)
    timeout: Mapped[float | None] = mapped_column(Double)
    meta: Mapped[JsonObject] = mapped_column(server_default=text("'{}'::jsonb"))
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    result: Mapped[Any | None] = mapped_column(JSONB)
    backoff: Mapped[float | None] = mapped_column(Double)
    # Limits per key, enforced within the job's queue: at most `concurrency_limit` running
    # jobs with this `concurrency_key`, at most `rate_limit` starts per `rate_period`
    # seconds with this `rate_key`.
    concurrency_key: Mapped[str | None] = mapped_column(Text)
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    rate_key: Mapped[str | None] = mapped_column(Text)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_period: Mapped[float | None] = mapped_column(Double)
    fence: Mapped[int | None] = mapped_column(BigInteger)
    # Snoozes (a job's `raise Snooze(seconds)`) use no attempt: this counts them, bounded
    # by `max_snoozes`. The progress a running attempt reported (a fraction from 0 to 1).
    snoozes: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_snoozes: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    progress: Mapped[float | None] = mapped_column(Double)
    progress_message: Mapped[str | None] = mapped_column(Text)
    progress_at: Mapped[Timestamp | None]
    # Workflow steps (chancy.workflow): the workflow, the step's name in it, whether it
    # runs whatever its parents' outcomes, and (while `blocked`) how many parents it still
    # waits for. NULL for plain jobs.
    workflow_id: Mapped[int | None] = mapped_column(BigInteger)
    step: Mapped[str | None] = mapped_column(Text)
    always: Mapped[bool | None] = mapped_column(Boolean)
    waiting_on: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint(state_in(set(JobState)), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        CheckConstraint("max_attempts >= 1", name="max_attempts"),
        # The claim: ready jobs without keys of one queue in (priority, id) order. Only
        # `pending` rows are in it, so finished and future jobs cost a claim nothing.
        Index(
            "ix_chancy_jobs_claim",
            "queue",
            "priority",
            "id",
            postgresql_where=literal_column(
                "state = 'pending' AND concurrency_key IS NULL AND rate_key IS NULL"
            ),
        ),
        # The limited claim: ready jobs with keys in (priority, id) order (its head), and
        # each key's ready jobs in that order, so it can take from each key only what
        # the key can start, however long its backlog.
        Index(
            "ix_chancy_jobs_ready_keyed",
            "queue",
            "priority",
            "id",
            postgresql_where=literal_column(
                "state = 'pending' AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL)"
            ),
        ),
        Index(
            "ix_chancy_jobs_ready_concurrency_key",
            "queue",
            "concurrency_key",
            "priority",
            "id",
            postgresql_where=literal_column("state = 'pending' AND concurrency_key IS NOT NULL"),
        ),
        Index(
            "ix_chancy_jobs_ready_rate_key",
            "queue",
            "rate_key",
            "priority",
            "id",
            postgresql_where=literal_column(
                "state = 'pending' AND rate_key IS NOT NULL AND concurrency_key IS NULL"
            ),
        ),
        # Promotion of scheduled and retrying jobs whose time has come.
        Index(
            "ix_chancy_jobs_waiting",
            "scheduled_at",
            postgresql_where=literal_column(state_in(WAITING_STATES)),
        ),
        # Rescue of running jobs whose lease expired.
        Index(
            "ix_chancy_jobs_lease",
            "lease_expires_at",
            postgresql_where=literal_column("state = 'running'"),
        ),
        # Retention: pruning finished jobs oldest first.
        Index(
            "ix_chancy_jobs_finished",
            "completed_at",
            postgresql_where=literal_column(state_in(FINISHED_STATES)),
        ),
        # Rate limits: the starts of a queue within the last period.
        Index(
            "ix_chancy_jobs_started",
            "queue",
            "started_at",
            postgresql_where=literal_column("started_at IS NOT NULL"),
        ),
        # Limits per key: the running jobs of a concurrency key, the starts of a rate key.
        Index(
            "ix_chancy_jobs_concurrency_key",
            "queue",
            "concurrency_key",
            postgresql_where=literal_column("state = 'running' AND concurrency_key IS NOT NULL"),
        ),
        Index(
            "ix_chancy_jobs_rate_key",
            "queue",
            "rate_key",
            "started_at",
            postgresql_where=literal_column("rate_key IS NOT NULL AND started_at IS NOT NULL"),
        ),
        # The steps of a workflow (reading, cancelling, retrying and pruning it).
        Index(
            "ix_chancy_jobs_workflow_id",
            "workflow_id",
            postgresql_where=literal_column("workflow_id IS NOT NULL"),
        ),
        # At most one unfinished job per unique key.
        Index(
            "uq_chancy_jobs_unique_key",
            "unique_key",
            unique=True,
            postgresql_where=literal_column(state_in(UNFINISHED_STATES)),
        ),
    )


class LeaderRow(Base):
    """The lease of the cluster's leader: the worker that runs the once-per-cluster
    services (promotion of scheduled jobs, rescue of expired leases).

    ``term`` grows by one each time leadership changes hands, so a deposed leader can
    tell that it was deposed.
    """

    __tablename__ = "chancy_leader"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    worker_id: Mapped[str] = mapped_column(Text)
    term: Mapped[int] = mapped_column(BigInteger)
    elected_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    expires_at: Mapped[Timestamp]


class QueueRow(Base):
    """A declared queue and the settings every worker honours for it.

    ``paused``: workers claim none of its jobs (until ``resume_at``, if set).
    ``global_concurrency``: the most of its jobs running at once across all workers.
    ``rate_limit`` starts per ``rate_period`` seconds across all workers.
    """

    __tablename__ = "chancy_queues"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    resume_at: Mapped[Timestamp | None]
    global_concurrency: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    rate_period: Mapped[float | None] = mapped_column(Double)
    # Set once a job with a concurrency or rate key was pushed: its claims count keys.
    keyed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    updated_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())

    __table_args__ = (
        CheckConstraint("global_concurrency IS NULL OR global_concurrency >= 1", name="global"),
        CheckConstraint("rate_limit IS NULL OR rate_limit >= 1", name="rate_limit"),
    )


class ScheduleRow(Base):
    """A cron schedule: the job it pushes, and when it is next due.

    The leader pushes the job of each due tick with the unique key
    ``cron:<name>:<tick>`` and moves ``next_run_at`` on, in one transaction.
    """

    __tablename__ = "chancy_schedules"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    cron: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default=text("'UTC'"))
    job: Mapped[JsonObject]
    catch_up: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    next_run_at: Mapped[Timestamp]
    last_run_at: Mapped[Timestamp | None]
    updated_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())


class WorkerRow(Base):
    """A live worker process: where it runs, what it runs, and when it was last heard of.

    A worker writes its row when it starts, its heartbeat moves ``heartbeat_at`` and
    ``expires_at`` on (a row whose worker is gone comes back at the next beat), and a
    clean stop deletes it. The leader deletes the rows of workers that stopped beating
    (``expires_at`` passed). Whether a worker leads is read from :class:`LeaderRow`.
    """

    __tablename__ = "chancy_workers"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(ARRAY(Text))
    concurrency: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    heartbeat_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())
    expires_at: Mapped[Timestamp]

    __table_args__ = (Index("ix_chancy_workers_expires_at", "expires_at"),)


class WorkflowRow(Base):
    """A workflow (:class:`chancy.workflow.Workflow`): its steps are rows of
    ``chancy_jobs`` naming it; its state is theirs (running until every step finished)."""

    __tablename__ = "chancy_workflows"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[Timestamp] = mapped_column(server_default=sql_func.now())


class WorkflowEdgeRow(Base):
    """One dependency of a workflow: the step ``child_id`` waits for ``parent_id``."""

    __tablename__ = "chancy_workflow_edges"

    child_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_chancy_workflow_edges_parent_id", "parent_id"),)


# The release of workflow steps (chancy.schema_functions), for metadata.create_all as the
# migrations create it. DDL formats its text with %: a literal one is written %%.
for _statement in RELEASE_STEPS_V1:
    event.listen(
        metadata,
        "after_create",
        DDL(_statement.replace("%", "%%")),  # type: ignore[no-untyped-call]
    )
