"""Pushing jobs: one INSERT for a batch of any size, unique keys resolved race-free."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError

from chancy.errors import InvalidKwargsError, UnknownQueueError
from chancy.jobs import JOB_FIELDS, Job, Reference, json_text
from chancy.models import state_in
from chancy.repository.announce import queue_changed, wake_queues
from chancy.repository.base import Repository
from chancy.repository.runner import (
    FOREIGN_KEY_VIOLATION,
    HotExecutable,
    Statement,
    SyncExecutable,
    sqlstate_of,
)
from chancy.repository.tables import PENDING, SCHEDULED, SECOND, jobs, queues
from chancy.states import UNFINISHED_STATES

__all__ = ["MAX_KWARGS_BYTES_DEFAULT", "PushRepository", "check_kwargs_size"]

MAX_KWARGS_BYTES_DEFAULT = 1024 * 1024
_WHAT = "the push"
# JSON objects are sent as text and cast, so every driver sends them the same way.
_JSON_FIELDS = frozenset({"kwargs", "meta"})


def _parameter_type(name: str) -> sa.types.TypeEngine[Any]:
    if name in _JSON_FIELDS:
        return sa.Text()
    if name == "delay":  # seconds after the push, by the database's clock
        return sa.Double()
    return jobs.c[name].type


def _push_statement(*, single: bool, keyed: bool = False) -> sa.Executable:
    """INSERT of a batch of jobs from parallel arrays (one per :data:`JOB_FIELDS`), in
    one round trip; with ``single``, of one job from plain parameters (the same statement
    without ``unnest``, a little cheaper for the server, for ``push``). With ``keyed``
    (the batch has jobs with concurrency or rate keys), the same statement also marks
    their queues keyed (:func:`_mark_keyed`).

    ``unnest`` keeps the statement's text the same for 1 job or 50,000 (one prepared
    statement, no parameter limit). The state is decided by the database's clock: a job
    due now is ``pending``, a future one ``scheduled``. A unique key already held by an
    unfinished job inserts nothing (the caller looks the holder up). The notification is
    sent once per statement, only when a ready job was inserted, and PostgreSQL delivers
    it at commit: a rolled-back push wakes no one.
    """
    types = {name: _parameter_type(name) for name in JOB_FIELDS}
    # Explicit casts: drivers that do not type their parameters (psycopg2) would send an
    # array of NULLs as an array of unknown type.
    batch: sa.Subquery | sa.TableValuedAlias
    if single:
        batch = sa.select(
            *(
                sa.cast(sa.bindparam(f"p_{name}", type_=type_), type_).label(name)
                for name, type_ in types.items()
            )
        ).subquery("batch")
    else:
        arrays = [
            sa.cast(sa.bindparam(f"p_{name}", type_=ARRAY(type_)), ARRAY(type_))
            for name, type_ in types.items()
        ]
        batch = sa.func.unnest(*arrays).table_valued(*types).render_derived("batch")
    due = sa.func.coalesce(
        batch.c.scheduled_at,
        sa.func.now() + SECOND * batch.c.delay,
        sa.func.now(),
    )
    values: dict[str, sa.ColumnElement[Any]] = {}
    for name in JOB_FIELDS:
        if name in _JSON_FIELDS:
            values[name] = sa.cast(batch.c[name], JSONB)
        elif name == "scheduled_at":
            values[name] = due
        elif name != "delay":
            values[name] = batch.c[name]
    values["state"] = sa.case((due > sa.func.now(), SCHEDULED), else_=PENDING)
    inserted = (
        pg_insert(jobs)
        .from_select(list(values), sa.select(*values.values()))
        .on_conflict_do_nothing(
            index_elements=[jobs.c.unique_key],
            # Literal, so PostgreSQL can match the partial unique index at plan time.
            index_where=sa.literal_column(state_in(UNFINISHED_STATES)),
        )
        .returning(
            jobs.c.id,
            jobs.c.unique_key,
            jobs.c.state,
            jobs.c.queue,
            *((jobs.c.concurrency_key, jobs.c.rate_key) if keyed else ()),
        )
        .cte("inserted")
    )
    result = inserted.join(wake_queues(inserted), sa.true())
    if keyed:
        result = result.join(_mark_keyed(inserted), sa.true())
    return (
        sa.select(inserted.c.id, inserted.c.unique_key).select_from(result).order_by(inserted.c.id)
    )


def _mark_keyed(inserted: sa.CTE) -> sa.CTE:
    """Mark keyed the queues in which ``inserted`` stored a job with a concurrency or
    rate key, and tell the workers: from then on the queue's claims go through the
    limited claim, which counts keys. Part of the push's statement, so a push that fails
    marks nothing."""
    keyed_queues = sa.select(inserted.c.queue).where(
        sa.or_(inserted.c.concurrency_key.is_not(None), inserted.c.rate_key.is_not(None))
    )
    marked = (
        sa.update(queues)
        .where(queues.c.name.in_(keyed_queues), ~queues.c.keyed)
        .values(keyed=True, updated_at=sa.func.now())
        .returning(queues.c.name)
        .cte("marked")
    )
    return sa.select(sa.func.count(queue_changed(marked.c.name)).label("n")).cte("announced_marked")


_PUSH = Statement(_push_statement(single=False), what=_WHAT)
_PUSH_ONE = Statement(_push_statement(single=True), what=_WHAT)
_PUSH_KEYED = Statement(_push_statement(single=False, keyed=True), what=_WHAT)
_PUSH_ONE_KEYED = Statement(_push_statement(single=True, keyed=True), what=_WHAT)
# The jobs holding unique keys. Unfinished holders first, newest first: the first row per
# key is the one a duplicate push refers to.
_FIND_HOLDERS_BY_KEYS = Statement(
    sa.select(jobs.c.id, jobs.c.unique_key)
    .where(jobs.c.unique_key == sa.func.any(sa.bindparam("p_keys", type_=ARRAY(sa.Text))))
    .order_by(
        sa.case((sa.literal_column(state_in(UNFINISHED_STATES)), 0), else_=1), jobs.c.id.desc()
    ),
    what=_WHAT,
)
_QUEUE_NAMES = Statement(sa.select(queues.c.name), what=_WHAT)


class PushRepository(Repository):
    """Inserting jobs."""

    async def push_many(self, conn: HotExecutable, jobs: Sequence[Job]) -> list[Reference]:
        """Insert ``jobs`` in one statement; one :class:`Reference` per job, in order.

        A job whose ``unique_key`` is held by an unfinished job (or by an earlier job of
        the same batch) is not inserted; its reference is the holder's. A job whose queue
        is not declared raises :class:`UnknownQueueError` (with the closest declared name
        when the connection can still read them), and nothing is inserted.
        """
        plan = _PushPlan(jobs)
        if not plan.batch:
            return []
        timeouts = self.timeouts
        statement, parameters = plan.statement()
        try:
            held = plan.inserted(await statement.rows(conn, parameters, timeouts=timeouts))
        except DBAPIError as exc:
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            # In the caller's transaction nothing more can be read: it is aborted.
            known = await _QUEUE_NAMES.rows(conn, {}) if _autocommits(conn) else []
            raise _unknown_queue(plan.batch, [row["name"] for row in known]) from exc
        if held:
            holders = await _FIND_HOLDERS_BY_KEYS.rows(conn, {"p_keys": held}, timeouts=timeouts)
            plan.held_by(holders)
        return plan.references()

    def push_many_sync(self, conn: SyncExecutable, jobs: Sequence[Job]) -> list[Reference]:
        """:meth:`push_many` on a synchronous ``Connection`` or ``Session`` (any driver)."""
        plan = _PushPlan(jobs)
        if not plan.batch:
            return []
        timeouts = self.timeouts
        statement, parameters = plan.statement()
        try:
            held = plan.inserted(statement.rows_sync(conn, parameters, timeouts=timeouts))
        except DBAPIError as exc:
            if sqlstate_of(exc) != FOREIGN_KEY_VIOLATION:
                raise
            raise _unknown_queue(plan.batch, []) from exc
        if held:
            plan.held_by(_FIND_HOLDERS_BY_KEYS.rows_sync(conn, {"p_keys": held}, timeouts=timeouts))
        return plan.references()


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
        self._inserted: set[int] = set()

    def statement(self) -> tuple[Statement, dict[str, Any]]:
        """The INSERT for the batch and its parameters: arrays, or scalars for one job;
        the one that also marks queues keyed when the batch has keyed jobs."""
        parameters = _push_parameters(self.batch)
        keyed = any(j.concurrency_key is not None or j.rate_key is not None for j in self.batch)
        if len(self.batch) == 1:
            single = {name: values[0] for name, values in parameters.items()}
            return (_PUSH_ONE_KEYED if keyed else _PUSH_ONE), single
        return (_PUSH_KEYED if keyed else _PUSH), parameters

    def inserted(self, rows: Sequence[Any]) -> list[str]:
        """Record the inserted rows (in id order); returns the unique keys that were held
        by existing jobs, whose ids must be looked up."""
        keys = {row["unique_key"] for row in rows if row["unique_key"] is not None}
        self._inserted = {row["id"] for row in rows}
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
        """One reference per given job: ``existing`` for a job that was not inserted (a
        job held its key: an earlier one, or the first of its key in the batch)."""
        first = {k: given for given, k in reversed(list(enumerate(self._stand_in)))}
        return [
            Reference(
                cast(int, self._ids[k]),
                existing=first[k] != given or self._ids[k] not in self._inserted,
            )
            for given, k in enumerate(self._stand_in)
        ]


def _push_parameters(jobs: Sequence[Job]) -> dict[str, list[Any]]:
    """One array per :data:`JOB_FIELDS`, the JSON objects encoded once per batch however
    many jobs share them."""
    encoded: dict[int, str] = {}  # id() is safe: every job of the batch stays alive
    parameters: dict[str, list[Any]] = {}
    for name in JOB_FIELDS:
        values: list[Any] = [getattr(job, name) for job in jobs]
        if name in _JSON_FIELDS:
            values = [_json_object(value, encoded) for value in values]
        parameters[f"p_{name}"] = values
    return parameters


def _json_object(value: Mapping[str, Any], encoded: dict[int, str]) -> str:
    """``value`` as JSON text, encoded once per batch however many jobs share it."""
    text = encoded.get(id(value))
    if text is None:
        text = encoded[id(value)] = json_text(value) if value else "{}"
    return text


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


def check_kwargs_size(batch: Sequence[Job], limit: int | None) -> None:
    """Raise :class:`InvalidKwargsError` if the kwargs of a job of ``batch`` take more
    than ``limit`` bytes as JSON (as the push sends them); None: no limit."""
    if limit is None:
        return
    sizes: dict[int, int] = {}  # kwargs shared by many jobs of the batch are measured once
    for index, job in enumerate(batch):
        if not job.kwargs:
            continue
        size = sizes.get(id(job.kwargs))
        if size is None:
            # json.dumps escapes everything outside ASCII: one byte per character.
            size = sizes[id(job.kwargs)] = len(json.dumps(dict(job.kwargs)))
        if size > limit:
            which = f"job {index} of the batch ({job.func})" if len(batch) > 1 else job.func
            raise InvalidKwargsError(
                f"the kwargs of {which} are {size:,} bytes of JSON, over the limit of "
                f"{limit:,} (Chancy(max_kwargs_bytes=...)); nothing was stored. Store large "
                "data elsewhere (a table, object storage) and pass its key, or raise the limit"
            )
