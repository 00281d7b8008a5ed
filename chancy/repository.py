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
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chancy.errors import SchemaError
from chancy.executor import Job, QueuedJob, Reference
from chancy.models import TABLE_PREFIX, JobRow, state_in
from chancy.states import UNFINISHED_STATES, JobState

__all__ = ["EVENTS_CHANNEL", "LEASE_SECONDS_DEFAULT", "Executable", "JobRepository"]

Executable = AsyncConnection | AsyncSession

EVENTS_CHANNEL = f"{TABLE_PREFIX}events"
LEASE_SECONDS_DEFAULT = 30.0

_jobs = cast(sa.Table, JobRow.__table__)
_c = _jobs.c
# Constants are rendered as literals: they are part of the statement (and must be, for the
# claim to match the partial index), not parameters.
_SECOND: sa.ColumnElement[Any] = sa.literal_column("interval '1 second'")
_PENDING: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.PENDING.value}'")
_SCHEDULED: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.SCHEDULED.value}'")
_RUNNING: sa.ColumnElement[Any] = sa.literal_column(f"'{JobState.RUNNING.value}'")


def _push_statement() -> sa.Executable:
    """INSERT of a batch of jobs from parallel arrays, in one round trip.

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
    }
    arrays = [sa.bindparam(f"p_{name}", type_=ARRAY(type_)) for name, type_ in columns.items()]
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
    # One row whatever the batch holds: a notification per queue that got a ready job.
    ready_queues = (
        sa.select(inserted.c.queue)
        .where(inserted.c.state == _PENDING)
        .distinct()
        .subquery("ready_queues")
    )
    payload = sa.func.json_build_object("event", "pushed", "queue", ready_queues.c.queue)
    woken = sa.select(
        sa.func.count(
            sa.func.pg_notify(sa.literal_column(f"'{EVENTS_CHANNEL}'"), sa.cast(payload, sa.Text))
        ).label("n")
    ).cte("woken")
    return (
        sa.select(inserted.c.id, inserted.c.unique_key)
        .select_from(inserted.join(woken, sa.true()))
        .order_by(inserted.c.id)
    )


def _claim_statement() -> sa.Executable:
    """Claim up to ``:limit`` ready jobs of ``:queue`` in one statement.

    The CTE walks ``ix_chancy_jobs_claim`` in (priority, id) order and locks with SKIP
    LOCKED, so concurrent claimers never wait for each other nor take the same job. The
    UPDATE starts the attempt: ``attempts + 1`` is the fencing token every later write
    about this attempt must name, and the lease says when another worker may take over.
    """
    ready = (
        sa.select(_c.id)
        .where(_c.queue == sa.bindparam("p_queue"), _c.state == _PENDING)
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


_PUSH = _push_statement()
_CLAIM = _claim_statement()
_GET = sa.select(*_jobs.c).where(_c.id == sa.bindparam("id"))
# The jobs holding unique keys. Unfinished holders first, newest first: the first row per
# key is the one a duplicate push refers to.
_FIND_HOLDERS_BY_KEYS = (
    sa.select(_c.id, _c.unique_key)
    .where(_c.unique_key == sa.func.any(sa.bindparam("p_keys", type_=ARRAY(sa.Text))))
    .order_by(sa.case((sa.literal_column(state_in(UNFINISHED_STATES)), 0), else_=1), _c.id.desc())
)


class JobRepository:
    """The statements about jobs. Stateless: one instance serves every connection."""

    async def push_many(self, conn: Executable, jobs: Sequence[Job]) -> list[Reference]:
        """Insert ``jobs`` in one statement; one :class:`Reference` per job, in order.

        A job whose ``unique_key`` is held by an unfinished job (or by an earlier job of
        the same batch) is not inserted; its reference is the holder's.
        """
        batch, stand_in = _dedupe_unique_keys(jobs)
        if not batch:
            return []
        with _schema_errors():
            rows = (await conn.execute(_PUSH, _push_parameters(batch))).all()
        inserted_keys = {row.unique_key for row in rows if row.unique_key is not None}
        inserted_ids = iter(row.id for row in rows)
        ids: list[int | None] = [
            next(inserted_ids)
            if job.unique_key is None or job.unique_key in inserted_keys
            else None
            for job in batch
        ]
        held = sorted(
            {
                job.unique_key
                for job, id_ in zip(batch, ids, strict=True)
                if job.unique_key and id_ is None
            }
        )
        if held:
            with _schema_errors():
                holders = await conn.execute(_FIND_HOLDERS_BY_KEYS, {"p_keys": held})
            holder_ids: dict[str, int] = {}
            for row in holders:
                holder_ids.setdefault(row.unique_key, row.id)
            ids = [
                holder_ids[job.unique_key] if id_ is None else id_  # type: ignore[index]
                for job, id_ in zip(batch, ids, strict=True)
            ]
        return [Reference(ids[k]) for k in stand_in]  # type: ignore[arg-type]

    async def get(self, conn: Executable, job_id: int) -> QueuedJob | None:
        """The job with ``job_id``, or None if there is none."""
        with _schema_errors():
            row = (await conn.execute(_GET, {"id": job_id})).mappings().first()
        return None if row is None else QueuedJob.from_row(row)

    async def claim_available(
        self,
        conn: Executable,
        queue: str,
        limit: int,
        worker_id: str,
        *,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
    ) -> list[QueuedJob]:
        """Start up to ``limit`` ready jobs of ``queue``: lowest priority value first, then
        in arrival order. Returns them in that order, ``running`` with a lease."""
        with _schema_errors():
            result = await conn.execute(
                _CLAIM,
                {
                    "p_queue": queue,
                    "p_limit": limit,
                    "p_worker_id": worker_id,
                    "p_lease_seconds": lease_seconds,
                },
            )
        jobs = [QueuedJob.from_row(row) for row in result.mappings()]
        jobs.sort(key=lambda job: (job.priority, job.id))
        return jobs


def _dedupe_unique_keys(jobs: Sequence[Job]) -> tuple[list[Job], list[int]]:
    """The jobs to insert (the first of each unique key), and for each given job the
    index of the inserted job that stands for it."""
    batch: list[Job] = []
    first_by_key: dict[str, int] = {}
    stand_in: list[int] = []
    for job in jobs:
        key = job.unique_key
        if key is not None and key in first_by_key:
            stand_in.append(first_by_key[key])
            continue
        if key is not None:
            first_by_key[key] = len(batch)
        stand_in.append(len(batch))
        batch.append(job)
    return batch, stand_in


def _push_parameters(jobs: Sequence[Job]) -> dict[str, list[Any]]:
    dumps = json.dumps
    scheduled: list[datetime | None] = [job.scheduled_at for job in jobs]
    return {
        "p_queue": [job.queue for job in jobs],
        "p_func": [job.func for job in jobs],
        "p_kwargs": [dumps(dict(job.kwargs)) for job in jobs],
        "p_priority": [job.priority for job in jobs],
        "p_max_attempts": [job.max_attempts for job in jobs],
        "p_scheduled_at": scheduled,
        "p_delay": [job.delay for job in jobs],
        "p_unique_key": [job.unique_key for job in jobs],
        "p_timeout": [job.timeout for job in jobs],
        "p_meta": [dumps(dict(job.meta)) for job in jobs],
    }


@contextlib.contextmanager
def _schema_errors() -> Iterator[None]:
    """Turn 'no such table/column' into a :class:`SchemaError` that says to migrate."""
    try:
        yield
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        if sqlstate in ("42P01", "42703"):  # undefined_table, undefined_column
            raise SchemaError() from exc
        raise
