"""Every SQL statement chancy runs, built with SQLAlchemy Core over :mod:`chancy.models`.

The statements are built once, at import, and executed with bound parameters, so
SQLAlchemy compiles each one once and asyncpg prepares it once per connection. Methods
take an ``AsyncConnection`` or an ``AsyncSession`` (the caller's transaction: nothing here
commits) and return frozen values from :mod:`chancy.executor`; rows never leave this
module.

Method names say what they do to which entity, with the guard and the batch in the name
(``claim_available``, ``push_many``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler

from chancy.errors import ChancyError, SchemaError, UnknownQueueError
from chancy.events import EVENTS_CHANNEL, EventKind
from chancy.jobs import Job, QueuedJob, Reference, json_text
from chancy.models import JobRow, LeaderRow, QueueRow, ScheduleRow, state_in
from chancy.queue import Queue, QueueInfo

if TYPE_CHECKING:
    from chancy.cron import Cron
from chancy.states import FINISHED_STATES, UNFINISHED_STATES, WAITING_STATES, JobState

__all__ = [
    "LEASE_SECONDS_DEFAULT",
    "Attempt",
    "Executable",
    "HotExecutable",
    "JobRepository",
    "LeaderRepository",
    "Outcome",
    "QueueRepository",
    "ScheduleRepository",
]

Executable = AsyncConnection | AsyncSession
"""Where a statement runs: the caller's SQLAlchemy connection or session, in its transaction."""
HotExecutable = Executable | asyncpg.Connection
"""Also the bare asyncpg connection of :func:`chancy.database.hot_connection`, where
each statement is its own transaction (one round trip), for the statements of the hot
path: push, claim, outcomes, leases."""

LEASE_SECONDS_DEFAULT = 30.0

_jobs = cast(sa.Table, JobRow.__table__)
_c = _jobs.c
_q = cast(sa.Table, QueueRow.__table__).alias("q")
_PAUSED = "q.paused AND (q.resume_at IS NULL OR q.resume_at > now())"
_QUEUE_HELD_BACK = (
    f"({_PAUSED} OR q.keyed OR q.global_concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)"
)
# Constants are rendered as literals: they are part of the statement (and must be, for the
# claim to match the partial index), not parameters.
_SECOND: sa.ColumnElement[Any] = sa.literal_column("interval '1 second'")
_PENDING: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.PENDING.value}'")
_SCHEDULED: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.SCHEDULED.value}'")
_RUNNING: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.RUNNING.value}'")
_RETRYING: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.RETRYING.value}'")
_FAILED: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.FAILED.value}'")
_CANCELLED: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.CANCELLED.value}'")


class _Statement:
    """A statement built with SQLAlchemy Core, also compiled once for bare asyncpg: its
    text and the order of its parameters, so the hot path runs it with no SQLAlchemy in
    between. (JSON columns arrive decoded either way: SQLAlchemy's asyncpg dialect gives
    each pooled connection a codec for them.)"""

    _DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]

    def __init__(self, construct: sa.Executable) -> None:
        self.construct = construct
        compiled = cast(
            SQLCompiler, cast(sa.ClauseElement, construct).compile(dialect=self._DIALECT)
        )
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        self._constants = dict(compiled.params)

    async def rows(self, conn: HotExecutable, parameters: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of the statement, as mappings of column name to value."""
        with _schema_errors():
            if not isinstance(conn, asyncpg.Connection):
                return (await conn.execute(self.construct, parameters)).mappings().all()
            arguments = [parameters.get(name, self._constants.get(name)) for name in self._names]
            try:
                return await conn.fetch(self.sql, *arguments)
            except (
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.exceptions.InternalClientError,
                OSError,
            ) as exc:
                raise DBAPIError.instance(
                    self.sql, None, exc, Exception, hide_parameters=True
                ) from exc


def _push_statement(*, single: bool) -> sa.Executable:
    """INSERT of a batch of jobs from parallel arrays, in one round trip; with ``single``,
    of one job from plain parameters (the same statement without ``unnest``, a little
    cheaper for the server, for ``push``).

    ``unnest`` keeps the statement's text the same for 1 job or 50,000 (one prepared
    statement, no parameter limit). The state is decided by the database's clock: a job
    due now is ``pending``, a future one ``scheduled``. A unique key already held by an
    unfinished job inserts nothing (the caller looks the holder up). The notification is
    sent once per statement, only when a ready job was inserted, and PostgreSQL delivers
    it at commit: a rolled-back push wakes no one.
    """
    columns: dict[str, Any] = {
        "queue": sa.Text,
        "func": sa.Text,
        "kwargs": sa.Text,
        "priority": sa.Integer,
        "max_attempts": sa.Integer,
        "scheduled_at": sa.DateTime(timezone=True),
        "delay": sa.Double,
        "unique_key": sa.Text,
        "timeout": sa.Double,
        "meta": sa.Text,
        "backoff": sa.Double,
        "concurrency_key": sa.Text,
        "concurrency_limit": sa.Integer,
        "rate_key": sa.Text,
        "rate_limit": sa.Integer,
        "rate_period": sa.Double,
    }
    # Explicit casts: drivers that do not type their parameters (psycopg2) would send an
    # array of NULLs as an array of unknown type.
    batch: sa.Subquery | sa.TableValuedAlias
    if single:
        batch = sa.select(
            *(
                sa.cast(sa.bindparam(f"p_{name}", type_=type_), type_).label(name)
                for name, type_ in columns.items()
            )
        ).subquery("batch")
    else:
        arrays = [
            sa.cast(sa.bindparam(f"p_{name}", type_=ARRAY(type_)), ARRAY(type_))
            for name, type_ in columns.items()
        ]
        batch = sa.func.unnest(*arrays).table_valued(*columns).render_derived("batch")
    due = sa.func.coalesce(
        batch.c.scheduled_at,
        sa.func.now() + _SECOND * batch.c.delay,
        sa.func.now(),
    )
    rows = sa.select(
        batch.c.queue,
        batch.c.func,
        sa.cast(batch.c.kwargs, JSONB),
        batch.c.priority,
        batch.c.max_attempts,
        due,
        sa.case((due > sa.func.now(), _SCHEDULED), else_=_PENDING),
        batch.c.unique_key,
        batch.c.timeout,
        sa.cast(batch.c.meta, JSONB),
        batch.c.backoff,
        batch.c.concurrency_key,
        batch.c.concurrency_limit,
        batch.c.rate_key,
        batch.c.rate_limit,
        batch.c.rate_period,
    )
    inserted = (
        pg_insert(_jobs)
        .from_select(
            [
                "queue",
                "func",
                "kwargs",
                "priority",
                "max_attempts",
                "scheduled_at",
                "state",
                "unique_key",
                "timeout",
                "meta",
                "backoff",
                "concurrency_key",
                "concurrency_limit",
                "rate_key",
                "rate_limit",
                "rate_period",
            ],
            rows,
        )
        .on_conflict_do_nothing(
            index_elements=[_c.unique_key],
            # Literal, so PostgreSQL can match the partial unique index at plan time.
            index_where=sa.literal_column(state_in(UNFINISHED_STATES)),
        )
        .returning(_c.id, _c.unique_key, _c.state, _c.queue)
        .cte("inserted")
    )
    woken = _wake_queues(inserted)
    return (
        sa.select(inserted.c.id, inserted.c.unique_key)
        .select_from(inserted.join(woken, sa.true()))
        .order_by(inserted.c.id)
    )


def _notify(payload: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.pg_notify(sa.literal_column(f"'{EVENTS_CHANNEL}'"), sa.cast(payload, sa.Text))


def _wake_queues(changed: sa.CTE) -> sa.CTE:
    """A one-row CTE sending ``pushed`` for each queue in which ``changed`` (a CTE with
    ``queue`` and ``state``) made a job ready. Joining it to the result on ``true`` makes
    PostgreSQL run it exactly once, whatever the batch holds."""
    ready_queues = (
        sa.select(changed.c.queue)
        .where(changed.c.state == _PENDING)
        .distinct()
        .subquery("ready_queues")
    )
    payload = sa.func.json_build_object(
        "event", EventKind.PUSHED.value, "queue", ready_queues.c.queue
    )
    return sa.select(sa.func.count(_notify(payload)).label("n")).cte(f"woken_{changed.name}")


def _announce_finished(changed: sa.CTE) -> sa.CTE:
    """A one-row CTE sending one ``finished`` event listing the ids that ``changed`` (a
    CTE with ``id`` and ``state``) moved to a final state: it wakes ``wait_for_job`` and
    tells the worker holding a cancelled job to stop it."""
    finished = (
        sa.select(sa.func.json_agg(changed.c.id).label("ids"))
        .where(sa.literal_column(state_in(FINISHED_STATES)).self_group())
        .select_from(changed)
        .subquery("finished")
    )
    payload = sa.func.json_build_object("event", EventKind.FINISHED.value, "ids", finished.c.ids)
    notified = sa.select(_notify(payload).label("sent")).where(finished.c.ids.is_not(None))
    return (
        sa.select(sa.func.count().label("n"))
        .select_from(notified.subquery("notified"))
        .cte(f"announced_{changed.name}")
    )


def _claim_statement() -> sa.Executable:
    """Claim up to ``:limit`` ready jobs of ``:queue`` in one statement.

    The CTE walks ``ix_chancy_jobs_claim`` in (priority, id) order and locks with SKIP
    LOCKED, so concurrent claimers never wait for each other nor take the same job. The
    UPDATE starts the attempt: ``attempts + 1`` is the fencing token every later write
    about this attempt must name, and the lease says when another worker may take over.
    """
    # A queue that is paused or limited (cluster-wide limits, or jobs with keys) is never
    # claimed here but by the limited claim, which serialises its claimers; so a worker
    # that has not yet heard of a pause or a limit cannot break it.
    held_back = sa.exists().where(
        _q.c.name == sa.bindparam("p_queue"),
        sa.literal_column(_QUEUE_HELD_BACK),
    )
    ready = (
        sa.select(_c.id)
        .where(
            _c.queue == sa.bindparam("p_queue"),
            _c.state == _PENDING,
            _c.concurrency_key.is_(None),
            _c.rate_key.is_(None),
            ~held_back,
        )
        .order_by(_c.priority, _c.id)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("ready")
    )
    return (
        sa.update(_jobs)
        .where(_c.id == ready.c.id)
        .values(
            state=_RUNNING,
            attempts=_c.attempts + 1,
            started_at=sa.func.now(),
            worker_id=sa.bindparam("p_worker_id"),
            lease_expires_at=sa.func.now()
            + _SECOND * sa.bindparam("p_lease_seconds", type_=sa.Double),
        )
        .returning(*_jobs.c)
    )


def _complete_statement() -> sa.Executable:
    """Write a batch of attempt outcomes, each fenced by ``state = 'running' AND attempts
    = :attempt``: an outcome from an attempt that no longer holds the job (its lease
    expired and another worker took over, or the job was cancelled) matches no row and
    changes nothing. Returns the ids that were written."""
    outcome = (
        sa.func.unnest(
            sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_attempts", type_=ARRAY(sa.Integer)),
            sa.bindparam("p_states", type_=ARRAY(sa.Text)),
            sa.bindparam("p_results", type_=ARRAY(sa.Text)),
            sa.bindparam("p_errors", type_=ARRAY(sa.Text)),
            sa.bindparam("p_retry_in", type_=ARRAY(sa.Double)),
        )
        .table_valued("id", "attempt", "state", "result", "error", "retry_in")
        .render_derived("outcome")
    )
    retrying = outcome.c.state == _RETRYING
    error_entry = sa.func.jsonb_build_object("at", sa.func.now()).op("||")(
        sa.cast(outcome.c.error, JSONB)
    )
    done = (
        sa.update(_jobs)
        .where(
            _c.id == outcome.c.id,
            _c.state == _RUNNING,
            _c.attempts == outcome.c.attempt,
        )
        .values(
            state=outcome.c.state,
            result=sa.cast(outcome.c.result, JSONB),
            errors=sa.case(
                (outcome.c.error.is_(None), _c.errors),
                else_=_c.errors.op("||")(sa.func.jsonb_build_array(error_entry)),
            ),
            completed_at=sa.case((retrying, None), else_=sa.func.now()),
            scheduled_at=sa.case(
                (retrying, sa.func.now() + _SECOND * outcome.c.retry_in), else_=_c.scheduled_at
            ),
            lease_expires_at=None,
        )
        .returning(_c.id, _c.state)
        .cte("done")
    )
    announced = _announce_finished(done)
    return sa.select(done.c.id).select_from(done.join(announced, sa.true()))


def _extend_leases_statement() -> sa.Executable:
    """Extend the leases of the attempts a worker still runs; returns the ids it still
    holds (a job missing from the result was cancelled or taken over)."""
    held = (
        sa.func.unnest(
            sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_attempts", type_=ARRAY(sa.Integer)),
        )
        .table_valued("id", "attempt")
        .render_derived("held")
    )
    return (
        sa.update(_jobs)
        .where(_c.id == held.c.id, _c.state == _RUNNING, _c.attempts == held.c.attempt)
        .values(lease_expires_at=sa.func.now() + _SECOND * sa.bindparam("p_lease_seconds"))
        .returning(_c.id)
    )


def _release_statement() -> sa.Executable:
    """Give running attempts back (a worker stopping): the jobs are ready again at once,
    keeping their attempt count."""
    held = (
        sa.func.unnest(
            sa.bindparam("p_ids", type_=ARRAY(sa.BigInteger)),
            sa.bindparam("p_attempts", type_=ARRAY(sa.Integer)),
        )
        .table_valued("id", "attempt")
        .render_derived("held")
    )
    released = (
        sa.update(_jobs)
        .where(_c.id == held.c.id, _c.state == _RUNNING, _c.attempts == held.c.attempt)
        .values(state=_PENDING, lease_expires_at=None, worker_id=None)
        .returning(_c.id, _c.queue, _c.state)
        .cte("released")
    )
    woken = _wake_queues(released)
    return sa.select(released.c.id).select_from(released.join(woken, sa.true()))


def _rescue_statement() -> sa.Executable:
    """Take back running jobs whose lease expired (their worker died, froze or lost the
    network): ready again if attempts remain, else ``failed``; the lost attempt is
    recorded in ``errors``."""
    expired = (
        sa.select(_c.id)
        .where(_c.state == _RUNNING, _c.lease_expires_at < sa.func.now())
        .order_by(_c.lease_expires_at)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    exhausted = _c.attempts >= _c.max_attempts
    lost = sa.func.jsonb_build_object(
        "at",
        sa.func.now(),
        "attempt",
        _c.attempts,
        "type",
        "LeaseExpired",
        "message",
        sa.func.concat(
            "the worker ",
            sa.func.coalesce(_c.worker_id, "?"),
            " stopped renewing its lease (it died, froze or lost its connection)",
        ),
        "traceback",
        None,
    )
    rescued = (
        sa.update(_jobs)
        .where(_c.id == expired.c.id)
        .values(
            state=sa.case((exhausted, _FAILED), else_=_PENDING),
            completed_at=sa.case((exhausted, sa.func.now()), else_=None),
            lease_expires_at=None,
            worker_id=None,
            errors=_c.errors.op("||")(sa.func.jsonb_build_array(lost)),
        )
        .returning(_c.id, _c.queue, _c.state)
        .cte("rescued")
    )
    woken, announced = _wake_queues(rescued), _announce_finished(rescued)
    return sa.select(rescued.c.id, rescued.c.state).select_from(
        rescued.join(woken, sa.true()).join(announced, sa.true())
    )


def _promote_statement() -> sa.Executable:
    """Make scheduled and retrying jobs whose time has come ready, oldest first."""
    due = (
        sa.select(_c.id)
        .where(sa.literal_column(state_in(WAITING_STATES)), _c.scheduled_at <= sa.func.now())
        .order_by(_c.scheduled_at)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    promoted = (
        sa.update(_jobs)
        .where(_c.id == due.c.id)
        .values(state=_PENDING)
        .returning(_c.id, _c.queue, _c.state)
        .cte("promoted")
    )
    woken = _wake_queues(promoted)
    return sa.select(promoted.c.id).select_from(promoted.join(woken, sa.true()))


def _cancel_statement() -> sa.Executable:
    """Cancel an unfinished job. A running one is told to stop by the ``finished``
    event; its worker's late outcome is fenced off by the state."""
    cancelled = (
        sa.update(_jobs)
        .where(_c.id == sa.bindparam("p_id"), sa.literal_column(state_in(UNFINISHED_STATES)))
        .values(state=_CANCELLED, completed_at=sa.func.now(), lease_expires_at=None)
        .returning(*_jobs.c)
        .cte("cancelled")
    )
    announced = _announce_finished(cancelled)
    return sa.select(*cancelled.c).select_from(cancelled.join(announced, sa.true()))


def _retry_statement() -> sa.Executable:
    """Bring a failed or cancelled job back, ready now, with one more attempt allowed."""
    retried = (
        sa.update(_jobs)
        .where(
            _c.id == sa.bindparam("p_id"),
            sa.literal_column(state_in({JobState.FAILED, JobState.CANCELLED})),
        )
        .values(
            state=_PENDING,
            completed_at=None,
            result=None,
            scheduled_at=sa.func.now(),
            max_attempts=sa.func.greatest(_c.max_attempts, _c.attempts + 1),
        )
        .returning(*_jobs.c)
        .cte("retried")
    )
    woken = _wake_queues(retried)
    return sa.select(*retried.c).select_from(retried.join(woken, sa.true()))


def _retry_many_statement() -> sa.Executable:
    """Bring back up to ``:limit`` jobs in state ``:state`` (failed or cancelled), of
    ``:queue`` or of every queue, as :func:`_retry_statement` does for one. Returns how
    many."""
    queue = sa.bindparam("p_queue", type_=sa.Text)
    chosen = (
        sa.select(_c.id)
        .where(
            _c.state == sa.bindparam("p_state", type_=sa.Text),
            sa.or_(queue.is_(None), _c.queue == queue),
        )
        .order_by(_c.id)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("chosen")
    )
    retried = (
        sa.update(_jobs)
        .where(_c.id == chosen.c.id)
        .values(
            state=_PENDING,
            completed_at=None,
            result=None,
            scheduled_at=sa.func.now(),
            max_attempts=sa.func.greatest(_c.max_attempts, _c.attempts + 1),
        )
        .returning(_c.id, _c.state, _c.queue)
        .cte("retried")
    )
    woken = _wake_queues(retried)
    return sa.select(sa.func.count(retried.c.id)).select_from(retried.join(woken, sa.true()))


_RETRY_MANY = _Statement(_retry_many_statement())
RETRY_BATCH = 10_000


def _prune_statement() -> sa.Executable:
    """Delete up to ``:limit`` jobs in the finished state ``:state`` completed before
    ``:before``, oldest first, through ``ix_chancy_jobs_finished``. SKIP LOCKED: a row
    someone is touching is left for the next round, so pruning never waits on anyone.
    Returns how many were deleted."""
    doomed = (
        sa.select(_c.id)
        .where(
            sa.literal_column(state_in(FINISHED_STATES)),
            _c.state == sa.bindparam("p_state", type_=sa.Text),
            _c.completed_at < sa.bindparam("p_before", type_=sa.DateTime(timezone=True)),
        )
        .order_by(_c.completed_at)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("doomed")
    )
    deleted = sa.delete(_jobs).where(_c.id == doomed.c.id).returning(_c.id).cte("deleted")
    return sa.select(sa.func.count()).select_from(deleted)


_PRUNE = _Statement(_prune_statement())


_schedules = cast(sa.Table, ScheduleRow.__table__)


def _upsert_schedule_statement() -> sa.Executable:
    insert = pg_insert(_schedules).values(
        name=sa.bindparam("p_name"),
        cron=sa.bindparam("p_cron"),
        timezone=sa.bindparam("p_timezone"),
        job=sa.bindparam("p_job", type_=JSONB),
        catch_up=sa.bindparam("p_catch_up"),
        next_run_at=sa.bindparam("p_next_run_at", type_=sa.DateTime(timezone=True)),
    )
    moved = sa.or_(
        _schedules.c.cron != insert.excluded.cron,
        _schedules.c.timezone != insert.excluded.timezone,
    )
    return insert.on_conflict_do_update(
        index_elements=[_schedules.c.name],
        set_={
            "cron": insert.excluded.cron,
            "timezone": insert.excluded.timezone,
            "job": insert.excluded.job,
            "catch_up": insert.excluded.catch_up,
            "next_run_at": sa.case(
                (moved, insert.excluded.next_run_at), else_=_schedules.c.next_run_at
            ),
            "updated_at": sa.func.now(),
        },
    )


_UPSERT_SCHEDULE = _upsert_schedule_statement()
_LOCK_DUE_SCHEDULES = (
    sa.select(*_schedules.c)
    .where(_schedules.c.next_run_at <= sa.bindparam("p_now", type_=sa.DateTime(timezone=True)))
    .order_by(_schedules.c.next_run_at)
    .with_for_update(skip_locked=True)
)
_ADVANCE_SCHEDULE = (
    sa.update(_schedules)
    .where(_schedules.c.name == sa.bindparam("p_name"))
    .values(
        last_run_at=sa.bindparam("p_tick", type_=sa.DateTime(timezone=True)),
        next_run_at=sa.bindparam("p_next_run_at", type_=sa.DateTime(timezone=True)),
        updated_at=sa.func.now(),
    )
)


_leader = cast(sa.Table, LeaderRow.__table__)
_LEADER_NAME = "leader"


def _elect_statement() -> sa.Executable:
    """Become or stay the leader: take the lease if it is free or expired, renew it if
    it is ours. Returns the term, or no row while another worker holds a live lease."""
    insert = pg_insert(_leader).values(
        name=_LEADER_NAME,
        worker_id=sa.bindparam("p_worker_id"),
        term=1,
        elected_at=sa.func.now(),
        expires_at=sa.func.now() + _SECOND * sa.bindparam("p_ttl", type_=sa.Double),
    )
    ours = _leader.c.worker_id == insert.excluded.worker_id
    return insert.on_conflict_do_update(
        index_elements=[_leader.c.name],
        set_={
            "worker_id": insert.excluded.worker_id,
            "term": sa.case((ours, _leader.c.term), else_=_leader.c.term + 1),
            "elected_at": sa.case((ours, _leader.c.elected_at), else_=sa.func.now()),
            "expires_at": insert.excluded.expires_at,
        },
        where=sa.or_(ours, _leader.c.expires_at < sa.func.now()),
    ).returning(_leader.c.term)


_COMPLETE = _Statement(_complete_statement())
_EXTEND_LEASES = _Statement(_extend_leases_statement())
_RELEASE = _Statement(_release_statement())
_RESCUE = _rescue_statement()
_PROMOTE = _promote_statement()
_CANCEL = _cancel_statement()
_RETRY = _retry_statement()
_ELECT = _elect_statement()
# Resigning expires the lease but keeps the row, so the next leader's term is higher.
_RESIGN = (
    sa.update(_leader)
    .where(_leader.c.name == _LEADER_NAME, _leader.c.worker_id == sa.bindparam("p_worker_id"))
    .values(expires_at=sa.func.now() - _SECOND)
)


# -- queues ---------------------------------------------------------------------------
_queues = cast(sa.Table, QueueRow.__table__)
_QUEUE_COLUMNS: tuple[sa.ColumnElement[Any], ...] = (
    _queues.c.name,
    sa.literal_column(
        "chancy_queues.paused AND (chancy_queues.resume_at IS NULL "
        "OR chancy_queues.resume_at > now())"
    ).label("paused"),
    _queues.c.resume_at,
    _queues.c.global_concurrency,
    _queues.c.rate_limit,
    _queues.c.rate_period,
    _queues.c.keyed,
)
_LIST_QUEUES = _Statement(sa.select(*_QUEUE_COLUMNS).order_by(_queues.c.name))
_GET_QUEUE = _Statement(sa.select(*_QUEUE_COLUMNS).where(_queues.c.name == sa.bindparam("p_name")))
_QUEUE_NAMES = _Statement(sa.select(_queues.c.name))


def _queue_changed(name: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return _notify(sa.func.json_build_object("event", EventKind.QUEUE_CHANGED.value, "queue", name))


def _declare_statement(*, settings: bool) -> sa.Executable:
    """Declare queues from parallel arrays. With ``settings``, a queue's cluster-wide
    limits are (re)written from the arrays, as the app's ``Queue`` objects say; without,
    a queue that exists is left as it is."""
    batch = (
        sa.func.unnest(
            sa.cast(sa.bindparam("p_names", type_=ARRAY(sa.Text)), ARRAY(sa.Text)),
            sa.cast(sa.bindparam("p_global", type_=ARRAY(sa.Integer)), ARRAY(sa.Integer)),
            sa.cast(sa.bindparam("p_rate_limits", type_=ARRAY(sa.Integer)), ARRAY(sa.Integer)),
            sa.cast(sa.bindparam("p_rate_periods", type_=ARRAY(sa.Double)), ARRAY(sa.Double)),
        )
        .table_valued("name", "global_concurrency", "rate_limit", "rate_period")
        .render_derived("batch")
    )
    insert = pg_insert(_queues).from_select(
        ["name", "global_concurrency", "rate_limit", "rate_period"], sa.select(batch)
    )
    if not settings:
        return insert.on_conflict_do_nothing(index_elements=[_queues.c.name])
    excluded = insert.excluded
    changed = sa.or_(
        _queues.c.global_concurrency.is_distinct_from(excluded.global_concurrency),
        _queues.c.rate_limit.is_distinct_from(excluded.rate_limit),
        _queues.c.rate_period.is_distinct_from(excluded.rate_period),
    )
    upserted = (
        insert.on_conflict_do_update(
            index_elements=[_queues.c.name],
            set_={
                "global_concurrency": excluded.global_concurrency,
                "rate_limit": excluded.rate_limit,
                "rate_period": excluded.rate_period,
                "updated_at": sa.func.now(),
            },
            where=changed,
        )
        .returning(_queues.c.name)
        .cte("upserted")
    )
    return sa.select(sa.func.count(_queue_changed(upserted.c.name))).select_from(upserted)


def _pause_statement() -> sa.Executable:
    """Pause (or resume) one queue and tell every worker: ``queue_changed`` makes them
    reload its settings, and ``pushed`` wakes their producers on a resume."""
    updated = (
        sa.update(_queues)
        .where(_queues.c.name == sa.bindparam("p_name"))
        .values(
            paused=sa.bindparam("p_paused", type_=sa.Boolean),
            resume_at=sa.bindparam("p_resume_at", type_=sa.DateTime(timezone=True)),
            updated_at=sa.func.now(),
        )
        .returning(_queues.c.name)
        .cte("updated")
    )
    pushed = sa.func.json_build_object("event", EventKind.PUSHED.value, "queue", updated.c.name)
    return sa.select(updated.c.name, _queue_changed(updated.c.name), _notify(pushed)).select_from(
        updated
    )


_DECLARE = _Statement(_declare_statement(settings=False))
_DECLARE_SETTINGS = _Statement(_declare_statement(settings=True))
_PAUSE = _Statement(_pause_statement())
# A queue's first job with a concurrency or rate key makes the queue keyed: from then on
# its claims go through the limited claim, which counts keys.
_MARK_KEYED = _Statement(
    sa.select(sa.func.count(_queue_changed(sa.column("name")))).select_from(
        sa.update(_queues)
        .where(
            _queues.c.name == sa.func.any(sa.bindparam("p_names", type_=ARRAY(sa.Text))),
            ~_queues.c.keyed,
        )
        .values(keyed=True, updated_at=sa.func.now())
        .returning(_queues.c.name)
        .cte("marked")
    )
)
# The limited claim, in a transaction after locking the queue's row: claimers of one
# limited queue take turns, so each counts what the others started. Start times come
# from clock_timestamp() (not the transaction's start), so they grow from one claim to
# the next and every window of ``rate_period`` holds at most ``rate_limit`` starts. Keys
# are counted among the first ``p_window`` ready jobs, ranked within each key.
_LOCK_QUEUE = _Statement(
    sa.select(sa.literal_column(_PAUSED).label("paused"))
    .select_from(_q)
    .where(_q.c.name == sa.bindparam("p_queue"))
    .with_for_update(of=_q)
)
_CLAIM_LIMITED = _Statement(
    sa.text(
        """
WITH settings AS (
    SELECT global_concurrency, rate_limit, rate_period
    FROM chancy_queues WHERE name = :p_queue
),
budget AS (
    SELECT greatest(0, least(
        :p_limit,
        coalesce((SELECT global_concurrency FROM settings) - (
            SELECT count(*) FROM chancy_jobs
            WHERE queue = :p_queue AND state = 'running'
        ), :p_limit),
        coalesce((SELECT rate_limit FROM settings) - (
            SELECT count(*) FROM chancy_jobs
            WHERE queue = :p_queue AND started_at IS NOT NULL
              AND started_at > clock_timestamp()
                  - interval '1 second' * (SELECT rate_period FROM settings)
        ), :p_limit)
    )) AS n
),
head AS (
    SELECT id, priority, concurrency_key, concurrency_limit, rate_key, rate_limit,
           rate_period,
           row_number() OVER (PARTITION BY concurrency_key ORDER BY priority, id) AS c_rank,
           row_number() OVER (PARTITION BY rate_key ORDER BY priority, id) AS r_rank
    FROM (
        SELECT * FROM chancy_jobs WHERE queue = :p_queue AND state = 'pending'
        ORDER BY priority, id LIMIT :p_window
    ) AS ready
),
eligible AS (
    SELECT h.id FROM head AS h
    WHERE (h.concurrency_key IS NULL OR h.c_rank + (
            SELECT count(*) FROM chancy_jobs AS r
            WHERE r.queue = :p_queue AND r.state = 'running'
              AND r.concurrency_key = h.concurrency_key
        ) <= h.concurrency_limit)
      AND (h.rate_key IS NULL OR h.r_rank + (
            SELECT count(*) FROM chancy_jobs AS r
            WHERE r.queue = :p_queue AND r.rate_key = h.rate_key
              AND r.started_at IS NOT NULL
              AND r.started_at > clock_timestamp() - interval '1 second' * h.rate_period
        ) <= h.rate_limit)
    ORDER BY h.priority, h.id
    LIMIT (SELECT n FROM budget)
),
locked AS (
    SELECT j.id FROM chancy_jobs AS j JOIN eligible AS e ON j.id = e.id
    WHERE j.state = 'pending'
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE chancy_jobs SET
    state = 'running',
    attempts = chancy_jobs.attempts + 1,
    started_at = clock_timestamp(),
    worker_id = :p_worker_id,
    lease_expires_at = clock_timestamp() + interval '1 second' * :p_lease_seconds
FROM locked WHERE chancy_jobs.id = locked.id
RETURNING chancy_jobs.*
"""
    ).bindparams(
        sa.bindparam("p_queue", type_=sa.Text),
        sa.bindparam("p_limit", type_=sa.Integer),
        sa.bindparam("p_window", type_=sa.Integer),
        sa.bindparam("p_worker_id", type_=sa.Text),
        sa.bindparam("p_lease_seconds", type_=sa.Double),
    )
)
CLAIM_WINDOW = 1000

_PUSH = _Statement(_push_statement(single=False))
_PUSH_ONE = _Statement(_push_statement(single=True))
_CLAIM = _Statement(_claim_statement())
_GET = sa.select(*_jobs.c).where(_c.id == sa.bindparam("id"))
# The jobs holding unique keys. Unfinished holders first, newest first: the first row per
# key is the one a duplicate push refers to.
_FIND_HOLDERS_BY_KEYS = _Statement(
    sa.select(_c.id, _c.unique_key)
    .where(_c.unique_key == sa.func.any(sa.bindparam("p_keys", type_=ARRAY(sa.Text))))
    .order_by(sa.case((sa.literal_column(state_in(UNFINISHED_STATES)), 0), else_=1), _c.id.desc())
)


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as the worker reports it.

    ``state`` is ``succeeded`` (with ``result``, any JSON value), ``retrying`` (with
    ``error`` and ``retry_in`` seconds) or ``failed``/``cancelled`` (with ``error``).
    ``error`` is the JSON object appended to the job's ``errors``. ``result_json``, when
    given, is ``result`` already serialised (so it is written without encoding it again).
    """

    id: int
    attempt: int
    state: JobState
    result: Any = None
    error: Mapping[str, Any] | None = None
    retry_in: float | None = None
    result_json: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One running attempt a worker holds: the job id and its fencing token."""

    id: int
    attempt: int


class JobRepository:
    """The statements about jobs. Stateless: one instance serves every connection."""

    async def push_many(self, conn: HotExecutable, jobs: Sequence[Job]) -> list[Reference]:
        """Insert ``jobs`` in one statement; one :class:`Reference` per job, in order.

        A job whose ``unique_key`` is held by an unfinished job (or by an earlier job of
        the same batch) is not inserted; its reference is the holder's.
        """
        plan = _PushPlan(jobs)
        if not plan.batch:
            return []
        if keyed := plan.keyed_queues():
            await _MARK_KEYED.rows(conn, {"p_names": keyed})
        statement, parameters = plan.statement()
        try:
            held = plan.inserted(await statement.rows(conn, parameters))
        except DBAPIError as exc:
            if _sqlstate(exc) != _FOREIGN_KEY_VIOLATION:
                raise
            # In the caller's transaction nothing more can be read: it is aborted.
            known = await _QUEUE_NAMES.rows(conn, {}) if _autocommits(conn) else []
            raise _unknown_queue(plan.batch, [row["name"] for row in known]) from exc
        if held:
            plan.held_by(await _FIND_HOLDERS_BY_KEYS.rows(conn, {"p_keys": held}))
        return plan.references()

    def push_many_sync(self, conn: Connection | Session, jobs: Sequence[Job]) -> list[Reference]:
        """:meth:`push_many` on a synchronous ``Connection`` or ``Session`` (any driver)."""
        plan = _PushPlan(jobs)
        if not plan.batch:
            return []
        with _schema_errors():
            if keyed := plan.keyed_queues():
                conn.execute(_MARK_KEYED.construct, {"p_names": keyed})
            statement, parameters = plan.statement()
            try:
                rows = conn.execute(statement.construct, parameters).mappings().all()
            except DBAPIError as exc:
                if _sqlstate(exc) != _FOREIGN_KEY_VIOLATION:
                    raise
                raise _unknown_queue(plan.batch, []) from exc
            held = plan.inserted(rows)
            if held:
                plan.held_by(
                    conn.execute(_FIND_HOLDERS_BY_KEYS.construct, {"p_keys": held}).mappings()
                )
        return plan.references()

    async def get(self, conn: Executable, job_id: int) -> QueuedJob | None:
        """The job with ``job_id``, or None if there is none."""
        with _schema_errors():
            row = (await conn.execute(_GET, {"id": job_id})).mappings().first()
        return None if row is None else QueuedJob.from_row(row)

    async def claim_available(
        self,
        conn: HotExecutable,
        queue: str,
        limit: int,
        worker_id: str,
        *,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
    ) -> list[QueuedJob]:
        """Start up to ``limit`` ready jobs of ``queue``: lowest priority value first, then
        in arrival order. Returns them in that order, ``running`` with a lease."""
        rows = await _CLAIM.rows(
            conn,
            {
                "p_queue": queue,
                "p_limit": limit,
                "p_worker_id": worker_id,
                "p_lease_seconds": lease_seconds,
            },
        )
        jobs = [QueuedJob.from_row(row) for row in rows]
        jobs.sort(key=lambda job: (job.priority, job.id))
        return jobs

    async def complete_many_if_running(
        self, conn: HotExecutable, outcomes: Sequence[Outcome]
    ) -> set[int]:
        """Write the outcomes of attempts; returns the ids written. An outcome whose
        attempt no longer holds its job (a stale worker) is not written."""
        if not outcomes:
            return set()
        dumps = json.dumps
        parameters = {
            "p_ids": [o.id for o in outcomes],
            "p_attempts": [o.attempt for o in outcomes],
            "p_states": [o.state.value for o in outcomes],
            "p_results": [
                o.result_json if o.result_json is not None else _json_or_none(o.result)
                for o in outcomes
            ],
            "p_errors": [None if o.error is None else dumps(dict(o.error)) for o in outcomes],
            "p_retry_in": [o.retry_in for o in outcomes],
        }
        return {row["id"] for row in await _COMPLETE.rows(conn, parameters)}

    async def extend_leases_many(
        self, conn: HotExecutable, attempts: Sequence[Attempt], lease_seconds: float
    ) -> set[int]:
        """Extend the leases of ``attempts``; returns the ids still held."""
        if not attempts:
            return set()
        parameters = {**_attempt_arrays(attempts), "p_lease_seconds": lease_seconds}
        return {row["id"] for row in await _EXTEND_LEASES.rows(conn, parameters)}

    async def release_many_if_running(
        self, conn: HotExecutable, attempts: Sequence[Attempt]
    ) -> set[int]:
        """Make the jobs of ``attempts`` ready again at once; returns the ids released."""
        if not attempts:
            return set()
        return {row["id"] for row in await _RELEASE.rows(conn, _attempt_arrays(attempts))}

    async def rescue_expired_many(self, conn: Executable, limit: int) -> dict[int, JobState]:
        """Take back up to ``limit`` running jobs whose lease expired; returns each
        rescued id with its new state (``pending``, or ``failed`` when out of attempts)."""
        result = await conn.execute(_RESCUE, {"p_limit": limit})
        return {row.id: JobState(row.state) for row in result}

    async def promote_due_many(self, conn: Executable, limit: int) -> int:
        """Make up to ``limit`` scheduled or retrying jobs whose time came ready."""
        result = await conn.execute(_PROMOTE, {"p_limit": limit})
        return len(result.all())

    async def cancel(self, conn: Executable, job_id: int) -> QueuedJob | None:
        """Cancel an unfinished job; returns it as cancelled, or None if it was not
        unfinished (unknown, or already finished)."""
        with _schema_errors():
            row = (await conn.execute(_CANCEL, {"p_id": job_id})).mappings().first()
        return None if row is None else QueuedJob.from_row(row)

    async def retry(self, conn: Executable, job_id: int) -> QueuedJob | None:
        """Make a failed or cancelled job ready again; None if it was neither."""
        with _schema_errors():
            row = (await conn.execute(_RETRY, {"p_id": job_id})).mappings().first()
        return None if row is None else QueuedJob.from_row(row)

    async def retry_many(
        self, conn: HotExecutable, state: JobState, queue: str | None, limit: int = RETRY_BATCH
    ) -> int:
        """Bring back up to ``limit`` jobs in ``state`` (failed or cancelled), of ``queue``
        or of every queue; returns how many."""
        if state not in (JobState.FAILED, JobState.CANCELLED):
            raise ChancyError(f"only failed or cancelled jobs can be retried, not {state.value}")
        parameters = {"p_state": state.value, "p_queue": queue, "p_limit": limit}
        rows = await _RETRY_MANY.rows(conn, parameters)
        return int(rows[0][0]) if rows else 0

    async def prune_finished_before(
        self, conn: HotExecutable, state: JobState, before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` jobs in the finished ``state`` completed before
        ``before``; returns how many."""
        parameters = {"p_state": state.value, "p_before": before, "p_limit": limit}
        rows = await _PRUNE.rows(conn, parameters)
        return int(rows[0][0])

    async def count_by_state(self, conn: Executable, queue: str) -> dict[str, int]:
        """How many jobs of ``queue`` are in each state (states with none are absent)."""
        statement = sa.select(_c.state, sa.func.count()).where(_c.queue == queue).group_by(_c.state)
        rows = (await conn.execute(statement)).all()
        return {str(state): int(count) for state, count in rows}

    async def timeline(self, conn: Executable, queue: str) -> list[Any]:
        """``(id, priority, started_at, completed_at)`` of every job of ``queue``."""
        statement = sa.select(_c.id, _c.priority, _c.started_at, _c.completed_at).where(
            _c.queue == queue
        )
        return list((await conn.execute(statement)).all())


class QueueRepository:
    """The statements about queues: declaring, pausing, listing, and the limited claim."""

    async def declare_many(
        self, conn: HotExecutable, queues: Sequence[Queue | str], *, settings: bool
    ) -> None:
        """Declare ``queues`` (a name declares with no limits). With ``settings``, the
        cluster-wide limits of each :class:`Queue` replace the stored ones; workers are
        told when they change."""
        parameters = _declare_parameters(queues)
        await (_DECLARE_SETTINGS if settings else _DECLARE).rows(conn, parameters)

    def declare_many_sync(
        self, conn: Connection | Session, queues: Sequence[Queue | str], *, settings: bool
    ) -> None:
        """:meth:`declare_many` on a synchronous ``Connection`` or ``Session``."""
        statement = _DECLARE_SETTINGS if settings else _DECLARE
        with _schema_errors():
            conn.execute(statement.construct, _declare_parameters(queues))

    async def list_all(self, conn: HotExecutable) -> list[QueueInfo]:
        """Every declared queue, by name."""
        return [QueueInfo(**dict(row)) for row in await _LIST_QUEUES.rows(conn, {})]

    async def get(self, conn: HotExecutable, name: str) -> QueueInfo | None:
        """The declared queue ``name``, or None."""
        rows = await _GET_QUEUE.rows(conn, {"p_name": name})
        return QueueInfo(**dict(rows[0])) if rows else None

    async def names(self, conn: HotExecutable) -> list[str]:
        return [row["name"] for row in await _QUEUE_NAMES.rows(conn, {})]

    async def pause(
        self, conn: HotExecutable, name: str, *, paused: bool, resume_at: datetime | None
    ) -> bool:
        """Pause or resume ``name``; False if no such queue is declared."""
        parameters = {"p_name": name, "p_paused": paused, "p_resume_at": resume_at}
        return bool(await _PAUSE.rows(conn, parameters))

    async def mark_keyed_many(self, conn: HotExecutable, names: Sequence[str]) -> None:
        """Make these queues keyed (their claims count concurrency and rate keys)."""
        await _MARK_KEYED.rows(conn, {"p_names": list(names)})

    async def claim_limited(
        self,
        conn: HotExecutable,
        queue: str,
        limit: int,
        worker_id: str,
        *,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
    ) -> list[QueuedJob]:
        """Claim up to ``limit`` jobs of a paused or limited queue, honouring its
        cluster-wide limits and its jobs' keys: the queue's row is locked for the claim,
        so its claimers take turns. A paused queue gives nothing."""
        if isinstance(conn, asyncpg.Connection):
            async with conn.transaction():
                return await self._claim_limited(conn, queue, limit, worker_id, lease_seconds)
        return await self._claim_limited(conn, queue, limit, worker_id, lease_seconds)

    async def _claim_limited(
        self, conn: HotExecutable, queue: str, limit: int, worker_id: str, lease_seconds: float
    ) -> list[QueuedJob]:
        lock = await _LOCK_QUEUE.rows(conn, {"p_queue": queue})
        if not lock or lock[0]["paused"]:
            return []
        parameters = {
            "p_queue": queue,
            "p_limit": limit,
            "p_window": max(CLAIM_WINDOW, limit),
            "p_worker_id": worker_id,
            "p_lease_seconds": lease_seconds,
        }
        jobs = [QueuedJob.from_row(row) for row in await _CLAIM_LIMITED.rows(conn, parameters)]
        jobs.sort(key=lambda job: (job.priority, job.id))
        return jobs


class ScheduleRepository:
    """The statements about cron schedules."""

    async def upsert(self, conn: Executable, cron: Cron, first: datetime) -> None:
        """Store ``cron``; ``first`` is its next tick if it is new or its expression or
        time zone changed (else its stored next tick stands)."""
        await conn.execute(
            _UPSERT_SCHEDULE,
            {
                "p_name": cron.name,
                "p_cron": cron.expression,
                "p_timezone": cron.timezone,
                "p_job": cron.job_fields(),
                "p_catch_up": cron.catch_up,
                "p_next_run_at": first,
            },
        )

    async def lock_due_many(self, conn: Executable, now: datetime) -> list[Any]:
        """The schedules due at ``now``, locked until the transaction ends (a schedule
        someone else holds is skipped)."""
        result = await conn.execute(_LOCK_DUE_SCHEDULES, {"p_now": now})
        return list(result.mappings())

    async def advance(
        self, conn: Executable, name: str, tick: datetime, following: datetime
    ) -> None:
        """Record that ``tick`` of schedule ``name`` was handled; its next is ``following``."""
        await conn.execute(
            _ADVANCE_SCHEDULE, {"p_name": name, "p_tick": tick, "p_next_run_at": following}
        )


class LeaderRepository:
    """The statements about the leader's lease."""

    async def elect_or_renew(self, conn: Executable, worker_id: str, ttl: float) -> int | None:
        """Take or renew the leader lease for ``ttl`` seconds; returns the term, or None
        while another worker leads."""
        result = await conn.execute(_ELECT, {"p_worker_id": worker_id, "p_ttl": ttl})
        return result.scalar_one_or_none()

    async def resign(self, conn: Executable, worker_id: str) -> None:
        """Give the lease up at once, so another worker takes over without waiting."""
        await conn.execute(_RESIGN, {"p_worker_id": worker_id})


def _declare_parameters(queues: Sequence[Queue | str]) -> dict[str, list[Any]]:
    given = [Queue(name=item) if isinstance(item, str) else item for item in queues]
    return {
        "p_names": [q.name for q in given],
        "p_global": [q.global_concurrency for q in given],
        "p_rate_limits": [q.rate_limit for q in given],
        "p_rate_periods": [
            q.rate_period.total_seconds() if q.rate_limit is not None else None for q in given
        ],
    }


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _attempt_arrays(attempts: Sequence[Attempt]) -> dict[str, list[int]]:
    return {"p_ids": [a.id for a in attempts], "p_attempts": [a.attempt for a in attempts]}


class _PushPlan:
    """The bookkeeping of one push: which jobs are inserted (the first of each unique key
    in the batch), and which reference each given job gets back. Driver-free, so the
    async and the sync push share it."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.batch: list[Job] = []
        self._stand_in: list[int] = []
        first_by_key: dict[str, int] = {}
        for job in jobs:
            key = job.unique_key
            if key is not None and key in first_by_key:
                self._stand_in.append(first_by_key[key])
                continue
            if key is not None:
                first_by_key[key] = len(self.batch)
            self._stand_in.append(len(self.batch))
            self.batch.append(job)
        self._ids: list[int | None] = []

    def keyed_queues(self) -> list[str]:
        """The queues of the batch's jobs with a concurrency or rate key."""
        return sorted({j.queue for j in self.batch if j.concurrency_key or j.rate_key})

    def statement(self) -> tuple[_Statement, dict[str, Any]]:
        """The INSERT for the batch and its parameters: arrays, or scalars for one job."""
        parameters = _push_parameters(self.batch)
        if len(self.batch) == 1:
            return _PUSH_ONE, {name: values[0] for name, values in parameters.items()}
        return _PUSH, parameters

    def inserted(self, rows: Sequence[Any]) -> list[str]:
        """Record the inserted rows (in id order); returns the unique keys that were held
        by existing jobs, whose ids must be looked up."""
        keys = {row["unique_key"] for row in rows if row["unique_key"] is not None}
        ids = iter(row["id"] for row in rows)
        self._ids = [
            next(ids) if job.unique_key is None or job.unique_key in keys else None
            for job in self.batch
        ]
        return sorted({job.unique_key for job in self.batch if job.unique_key} - keys)

    def held_by(self, holders: Iterable[Any]) -> None:
        """Record the holders of the held keys (the first row per key wins)."""
        by_key: dict[str, int] = {}
        for row in holders:
            by_key.setdefault(row["unique_key"], row["id"])
        self._ids = [
            by_key[job.unique_key] if id_ is None and job.unique_key else id_
            for job, id_ in zip(self.batch, self._ids, strict=True)
        ]

    def references(self) -> list[Reference]:
        return [Reference(cast(int, self._ids[k])) for k in self._stand_in]


def _json_object(value: Mapping[str, Any], encoded: dict[int, str]) -> str:
    """``value`` as JSON text, encoded once per batch however many jobs share it."""
    text = encoded.get(id(value))
    if text is None:
        text = encoded[id(value)] = json_text(value) if value else "{}"
    return text


def _push_parameters(jobs: Sequence[Job]) -> dict[str, list[Any]]:
    encoded: dict[int, str] = {}  # id() is safe: every job of the batch stays alive
    scheduled: list[datetime | None] = [job.scheduled_at for job in jobs]
    return {
        "p_queue": [job.queue for job in jobs],
        "p_func": [job.func for job in jobs],
        "p_kwargs": [_json_object(job.kwargs, encoded) for job in jobs],
        "p_priority": [job.priority for job in jobs],
        "p_max_attempts": [job.max_attempts for job in jobs],
        "p_scheduled_at": scheduled,
        "p_delay": [job.delay for job in jobs],
        "p_unique_key": [job.unique_key for job in jobs],
        "p_timeout": [job.timeout for job in jobs],
        "p_meta": [_json_object(job.meta, encoded) for job in jobs],
        "p_backoff": [job.backoff for job in jobs],
        "p_concurrency_key": [job.concurrency_key for job in jobs],
        "p_concurrency_limit": [job.concurrency_limit for job in jobs],
        "p_rate_key": [job.rate_key for job in jobs],
        "p_rate_limit": [job.rate_limit for job in jobs],
        "p_rate_period": [job.rate_period for job in jobs],
    }


_FOREIGN_KEY_VIOLATION = "23503"


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


def _autocommits(conn: HotExecutable) -> bool:
    return isinstance(conn, asyncpg.Connection) and not conn.is_in_transaction()


def _unknown_queue(jobs: Sequence[Job], known: Sequence[str]) -> UnknownQueueError:
    """The error for a push to a queue that is not declared, with the closest declared
    name when ``known`` names are given."""
    missing = sorted({job.queue for job in jobs} - set(known)) or sorted({j.queue for j in jobs})
    name = missing[0]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return UnknownQueueError(
        f"queue {name!r} is not declared{hint} Declare it first: list it in "
        f"Chancy(queues=[...]), call `await chancy.declare(Queue(name={name!r}))`, or push "
        "with declare=True"
    )


@contextlib.contextmanager
def _schema_errors() -> Iterator[None]:
    """Turn 'no such table/column' into a :class:`SchemaError` that says to migrate."""
    try:
        yield
    except DBAPIError as exc:
        if _sqlstate(exc) in ("42P01", "42703"):  # undefined_table, undefined_column
            raise SchemaError() from exc
        raise
