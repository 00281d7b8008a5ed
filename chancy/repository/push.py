"""Pushing jobs: one INSERT per 2,000 jobs, in one transaction; unique keys resolved
race-free; queues checked in the statement."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from chancy.errors import InvalidKwargsError, UnknownQueueError
from chancy.jobs import JOB_FIELDS, Job, Reference, json_text
from chancy.models import state_in
from chancy.repository.announce import queue_changed, wake_queues
from chancy.repository.base import Repository
from chancy.repository.runner import (
    NOT_NULL_VIOLATION,
    HotExecutable,
    Statement,
    SyncExecutable,
    sqlstate_of,
)
from chancy.repository.tables import BLOCKED, PENDING, SCHEDULED, SECOND, jobs, queues
from chancy.states import UNFINISHED_STATES, JobState

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_SIZE",
    "MAX_KWARGS_BYTES_DEFAULT",
    "PushRepository",
    "Pushed",
    "check_kwargs_size",
]

MAX_KWARGS_BYTES_DEFAULT = 1024 * 1024
_WHAT = "the push"
CHUNK_SIZE = 2_000
"""The most jobs one INSERT carries: a bigger batch runs as several, in one transaction
(past a few thousand rows, one statement gets slower per row)."""
CHUNK_BYTES = 64 * 1024 * 1024
"""The most JSON (kwargs and meta) one INSERT carries: a batch of large jobs runs as
several statements, in one transaction (PostgreSQL refuses a message over 1 GB, and
2,000 jobs of 1 MB of kwargs each would be 2 GB)."""
# JSON objects are sent as text and cast, so every driver sends them the same way.
_JSON_FIELDS = frozenset({"kwargs", "meta"})
_NO_DEFAULT = object()
_EMPTY_OBJECT: Mapping[str, Any] = MappingProxyType({})
# The value of each field the server's default also gives (func and queue have none).
_DEFAULTS: dict[str, Any] = {
    field.name: field.default if field.default is not dataclasses.MISSING else _EMPTY_OBJECT
    for field in dataclasses.fields(Job)
    if field.name not in ("func", "queue")
}
_PENDING_STATE = JobState.PENDING.value
_GETTERS = {name: operator.attrgetter(name) for name in JOB_FIELDS}


def _parameter_type(name: str) -> sa.types.TypeEngine[Any]:
    if name in _JSON_FIELDS:
        return sa.Text()
    if name == "delay":  # seconds after the push, by the database's clock
        return sa.Double()
    return jobs.c[name].type


def _push_statement(
    columns: frozenset[str], *, single: bool, announce: bool = True
) -> sa.Executable:
    """INSERT of a batch of jobs from parallel arrays, one per field of ``columns`` (the
    fields that some job of the batch sets: the others take the server's defaults), in
    one round trip; with ``single``, of one job from plain parameters (the same statement
    without ``unnest``, a little cheaper for the server, for ``push``).

    ``unnest`` keeps the statement's text the same for 1 job or 2,000 (one prepared
    statement, no parameter limit). The state is decided by the database's clock: a job
    due now is ``pending``, a future one ``scheduled`` (a batch that sets neither
    ``scheduled_at`` nor ``delay`` leaves both to the defaults: due now, ``pending``). A
    unique key already held by an unfinished job inserts nothing (the caller looks the
    holder up). With concurrency or rate keys, the same statement also marks their queues
    keyed (:func:`_mark_keyed`).

    The queues of the batch are locked ``FOR KEY SHARE`` first (a queue's deletion waits
    for the push, and a push waits for a deletion under way): a job whose queue is not
    declared gets a NULL queue, which fails the whole statement on the column's NOT NULL
    (:func:`_is_unknown_queue`), so nothing is stored. No foreign key: that costs a check
    per row, this a lock per queue.

    With ``announce``, the statement also sends ``pushed`` for the queues it made ready,
    delivered at commit (for pushes in the application's connection, whose commit chancy
    cannot see); without, it returns each row's ``state`` and ``queue`` so the caller
    wakes them after the commit (:mod:`chancy.wakeups`). The rows come back in no
    particular order; their ids follow the batch's order.
    """
    types = {name: _parameter_type(name) for name in JOB_FIELDS if name in columns}
    batch = batch_of(types, single=single)
    values = row_values(batch, columns, known_queues())
    insert = pg_insert(jobs).from_select(list(values), sa.select(*values.values()))
    if "unique_key" in columns:
        insert = insert.on_conflict_do_nothing(
            index_elements=[jobs.c.unique_key],
            # Literal, so PostgreSQL can match the partial unique index at plan time.
            index_where=sa.literal_column(state_in(UNFINISHED_STATES)),
        )
    keyed = bool({"concurrency_key", "rate_key"} & columns)
    inserted = insert.returning(
        jobs.c.id,
        jobs.c.unique_key,
        jobs.c.state,
        jobs.c.queue,
        *((jobs.c.concurrency_key, jobs.c.rate_key) if keyed else ()),
    ).cte("inserted")
    result: sa.FromClause = inserted
    if announce:
        result = result.join(wake_queues(inserted), sa.true())
    if keyed:
        result = result.join(_mark_keyed(inserted), sa.true())
    returned = [inserted.c.id, inserted.c.unique_key, inserted.c.state, inserted.c.queue]
    return sa.select(*returned).select_from(result)


def batch_of(
    types: Mapping[str, sa.types.TypeEngine[Any]], *, single: bool
) -> sa.Subquery | sa.TableValuedAlias:
    """The batch a push statement inserts, one column per entry of ``types``: parallel
    arrays (``p_<name>``) through ``unnest``, or with ``single``, plain parameters."""
    # Explicit casts: drivers that do not type their parameters (psycopg2) would send an
    # array of NULLs as an array of unknown type.
    if single:
        return sa.select(
            *(
                sa.cast(sa.bindparam(f"p_{name}", type_=type_), type_).label(name)
                for name, type_ in types.items()
            )
        ).subquery("batch")
    arrays = [
        sa.cast(sa.bindparam(f"p_{name}", type_=ARRAY(type_)), ARRAY(type_))
        for name, type_ in types.items()
    ]
    return sa.func.unnest(*arrays).table_valued(*types).render_derived("batch")


def known_queues() -> sa.CTE:
    """The declared queues among ``p_queues``, locked ``FOR KEY SHARE`` (see
    :func:`_push_statement`)."""
    return (
        sa.select(queues.c.name)
        .where(
            queues.c.name
            == sa.func.any(sa.cast(sa.bindparam("p_queues", type_=ARRAY(sa.Text)), ARRAY(sa.Text)))
        )
        .with_for_update(read=True, key_share=True)
        .cte("known")
    )


def row_values(
    batch: sa.Subquery | sa.TableValuedAlias,
    columns: frozenset[str],
    known: sa.CTE,
    *,
    waiting_on: sa.ColumnElement[Any] | None = None,
) -> dict[str, sa.ColumnElement[Any]]:
    """The values of the rows a push inserts from ``batch``, by column: the job fields
    of ``columns`` (an undeclared queue's NULL, JSON cast), and the state by the
    database's clock (``blocked`` while ``waiting_on`` is above zero, for workflow steps)."""
    values: dict[str, sa.ColumnElement[Any]] = {}
    for name in JOB_FIELDS:
        if name not in columns or name in ("scheduled_at", "delay"):
            continue
        if name == "queue":
            values[name] = sa.case((batch.c.queue.in_(sa.select(known.c.name)), batch.c.queue))
        elif name in _JSON_FIELDS:
            values[name] = sa.cast(batch.c[name], JSONB)
        else:
            values[name] = batch.c[name]
    ready: sa.ColumnElement[Any] = PENDING
    if "scheduled_at" in columns or "delay" in columns:
        due = sa.func.coalesce(
            batch.c.scheduled_at if "scheduled_at" in columns else sa.null(),
            sa.func.now() + SECOND * batch.c.delay if "delay" in columns else sa.null(),
            sa.func.now(),
        )
        values["scheduled_at"] = due
        ready = values["state"] = sa.case((due > sa.func.now(), SCHEDULED), else_=PENDING)
    if waiting_on is not None:
        values["state"] = sa.case((waiting_on > 0, BLOCKED), else_=ready)
    return values


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


_StatementKey = tuple[frozenset[str], bool, bool]
_STATEMENTS: dict[_StatementKey, Statement] = {}


def _statement_for(columns: frozenset[str], *, single: bool, announce: bool) -> Statement:
    """The push statement for a batch that sets ``columns``, compiled on first use (a
    few shapes cover nearly every application)."""
    key = (columns, single, announce)
    statement = _STATEMENTS.get(key)
    if statement is None:
        construct = _push_statement(columns, single=single, announce=announce)
        statement = _STATEMENTS[key] = Statement(construct, what=_WHAT)
    return statement


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


class Pushed(NamedTuple):
    """What a push did: one reference per given job, in order, and the queues in which it
    stored a ready job (to wake once the transaction commits)."""

    references: list[Reference]
    ready_queues: frozenset[str]


class PushRepository(Repository):
    """Inserting jobs."""

    async def push_many(self, conn: HotExecutable, jobs: Sequence[Job]) -> list[Reference]:
        """Insert ``jobs``; one :class:`Reference` per job, in order. The statement
        announces the ready queues itself, at its commit (see :meth:`insert_many`)."""
        return (await self.insert_many(conn, jobs, announce=True)).references

    async def insert_many(
        self, conn: HotExecutable, jobs: Sequence[Job], *, announce: bool
    ) -> Pushed:
        """Insert ``jobs``, in statements of :data:`CHUNK_SIZE` jobs in one transaction
        (the caller's, or one of its own on a bare connection): all are stored or none.

        A job whose ``unique_key`` is held by an unfinished job (or by an earlier job of
        the same batch) is not inserted; its reference is the holder's. A job whose queue
        is not declared raises :class:`UnknownQueueError` (with the closest declared name
        when the connection can still read them), and nothing is inserted. With
        ``announce`` the statements send the wake-ups (at commit); without, the caller
        sends them once the transaction committed, to :attr:`Pushed.ready_queues`.
        """
        plan = _PushPlan(jobs)
        if not plan.batch:
            return Pushed([], frozenset())
        if plan.split() > 1 and await _commits_each_statement(conn):
            plan.unsplit()  # one statement: all stored or none
        try:
            if isinstance(conn, asyncpg.Connection) and len(plan.bounds) > 1:
                async with conn.transaction():
                    await self._insert_chunks(conn, plan, announce)
            else:
                await self._insert_chunks(conn, plan, announce)
        except DBAPIError as exc:
            if not _is_unknown_queue(exc):
                raise
            # In the caller's transaction nothing more can be read: it is aborted.
            known = await _QUEUE_NAMES.rows(conn, {}) if _autocommits(conn) else []
            raise unknown_queue(plan.batch, [row["name"] for row in known]) from exc
        held = plan.inserted()
        if held:
            holders = await _FIND_HOLDERS_BY_KEYS.rows(
                conn, {"p_keys": held}, timeouts=self.timeouts
            )
            plan.held_by(holders)
        return Pushed(plan.references(), frozenset(plan.ready_queues))

    async def _insert_chunks(self, conn: HotExecutable, plan: _PushPlan, announce: bool) -> None:
        """Run the batch's statements one after the other, building the parameters of the
        next while the server runs one (one statement in flight at a time)."""
        if len(plan.bounds) == 1:
            ((statement, parameters),) = plan.statements(announce=announce)
            plan.record(await statement.rows(conn, parameters, timeouts=self.timeouts))
            return
        running: asyncio.Task[Sequence[Any]] | None = None
        try:
            for statement, parameters in plan.statements(announce=announce):
                if running is not None:
                    plan.record(await running)
                running = asyncio.ensure_future(
                    statement.rows(conn, parameters, timeouts=self.timeouts)
                )
                await asyncio.sleep(0)  # the statement is sent; the next is built meanwhile
            if running is not None:
                plan.record(await running)
        finally:
            if running is not None and not running.done():
                running.cancel()

    def push_many_sync(self, conn: SyncExecutable, jobs: Sequence[Job]) -> list[Reference]:
        """:meth:`push_many` on a synchronous ``Connection`` or ``Session`` (any driver)."""
        return self.insert_many_sync(conn, jobs, announce=True).references

    def insert_many_sync(
        self, conn: SyncExecutable, jobs: Sequence[Job], *, announce: bool
    ) -> Pushed:
        """:meth:`insert_many` on a synchronous ``Connection`` or ``Session``, in its
        transaction."""
        plan = _PushPlan(jobs)
        if not plan.batch:
            return Pushed([], frozenset())
        if plan.split() > 1 and _dbapi_autocommits(_sync_connection(conn)):
            plan.unsplit()  # one statement: all stored or none
        try:
            for statement, parameters in plan.statements(announce=announce):
                plan.record(statement.rows_sync(conn, parameters, timeouts=self.timeouts))
        except DBAPIError as exc:
            if not _is_unknown_queue(exc):
                raise
            raise unknown_queue(plan.batch, []) from exc
        held = plan.inserted()
        if held:
            plan.held_by(
                _FIND_HOLDERS_BY_KEYS.rows_sync(conn, {"p_keys": held}, timeouts=self.timeouts)
            )
        return Pushed(plan.references(), frozenset(plan.ready_queues))


def _is_unknown_queue(exc: DBAPIError) -> bool:
    """Whether ``exc`` is the push statement's refusal of an undeclared queue: the NULL
    it puts in the ``queue`` column for one (see :func:`_push_statement`). The column is
    read from the error's fields, not its message, which the server may word in another
    language (``lc_messages``)."""
    return sqlstate_of(exc) == NOT_NULL_VIOLATION and _column_of(exc) == "queue"


def _column_of(exc: DBAPIError) -> str | None:
    """The column an integrity error names in its fields (asyncpg: ``column_name``;
    psycopg and psycopg2: ``diag.column_name``), or None."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(error, "column_name", None) or getattr(
            getattr(error, "diag", None), "column_name", None
        )
        if name:
            return str(name)
    return None


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
        self._keyed = bool(first_by_key)  # without keys, every job is inserted, in order
        self._ids: list[int | None] = []
        self._inserted: set[int] = set()
        self._new_ids: list[int] = []
        self._new_keys: set[str] = set()
        self.ready_queues: set[str] = set()
        self.bounds: list[tuple[int, int]] = [(0, len(self.batch))]
        self._encoded: dict[int, str] = {}  # id() is safe: every job of the batch stays alive

    def split(self) -> int:
        """Cut the batch into statements of at most :data:`CHUNK_SIZE` jobs and
        :data:`CHUNK_BYTES` of JSON each (encoding each JSON object once, for the
        statements too); how many statements."""
        if len(self.batch) == 1:
            return 1
        self.bounds = []
        start = size = 0
        for index, job in enumerate(self.batch):
            weight = len(_json_object(job.kwargs, self._encoded))
            weight += len(_json_object(job.meta, self._encoded))
            if index > start and (index - start >= CHUNK_SIZE or size + weight > CHUNK_BYTES):
                self.bounds.append((start, index))
                start, size = index, 0
            size += weight
        self.bounds.append((start, len(self.batch)))
        return len(self.bounds)

    def unsplit(self) -> None:
        """One statement for the whole batch (where each statement would commit alone)."""
        self.bounds = [(0, len(self.batch))]

    def statements(self, *, announce: bool) -> Iterator[tuple[Statement, dict[str, Any]]]:
        """The INSERTs for the batch, one per :attr:`bounds`, and their parameters:
        arrays, or scalars for one job."""
        for start, end in self.bounds:
            chunk = self.batch[start:end]
            if len(chunk) == 1:
                columns, single = _single_parameters(chunk[0])
                yield _statement_for(columns, single=True, announce=announce), single
                continue
            columns, parameters = _push_parameters(chunk, self._encoded)
            parameters["p_queues"] = sorted({job.queue for job in chunk})
            yield _statement_for(columns, single=False, announce=announce), parameters

    def record(self, rows: Sequence[Any]) -> None:
        """Record the rows one statement inserted: their ids (plain ints, not the rows:
        a batch of 50,000 keeps no 50,000 records alive), unique keys and ready queues."""
        for row in rows:
            self._new_ids.append(row["id"])
            if row["unique_key"] is not None:
                self._new_keys.add(row["unique_key"])
            if row["state"] == _PENDING_STATE:
                self.ready_queues.add(row["queue"])

    def inserted(self) -> list[str]:
        """Match the recorded ids to the batch (they come back in any order; they follow
        the batch's order); returns the unique keys that were held by existing jobs,
        whose ids must be looked up."""
        ordered = sorted(self._new_ids)
        if not self._keyed:
            self._ids = list(ordered)
            return []
        keys = self._new_keys
        self._inserted = set(ordered)
        ids = iter(ordered)
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
        if not self._keyed:  # no stand-ins, nothing held: one fresh job per id, in order
            return [Reference(id_) for id_ in cast(list[int], self._ids)]
        first = {k: given for given, k in reversed(list(enumerate(self._stand_in)))}
        return [
            Reference(
                cast(int, self._ids[k]),
                existing=first[k] != given or self._ids[k] not in self._inserted,
            )
            for given, k in enumerate(self._stand_in)
        ]


def _push_parameters(
    jobs: Sequence[Job], encoded: dict[int, str]
) -> tuple[frozenset[str], dict[str, list[Any]]]:
    """The fields some job of ``jobs`` sets (``func`` and ``queue`` always; the others
    when a job's value is not the default, which the server also has), and one array per
    such field, the JSON objects encoded once per batch however many jobs share them
    (``encoded``: by ``id()``, kept by the caller while the batch lives)."""
    columns: set[str] = set()
    parameters: dict[str, list[Any]] = {}
    for name in JOB_FIELDS:
        values: list[Any] = list(map(_GETTERS[name], jobs))
        default = _DEFAULTS.get(name, _NO_DEFAULT)
        if default is not _NO_DEFAULT and values.count(default) == len(values):
            continue
        if name in _JSON_FIELDS:
            values = [_json_object(value, encoded) for value in values]
        columns.add(name)
        parameters[f"p_{name}"] = values
    return frozenset(columns), parameters


# Per field: its name, parameter, getter, default (or _NO_DEFAULT) and whether it is JSON.
_SINGLE_FIELDS = tuple(
    (name, f"p_{name}", _GETTERS[name], _DEFAULTS.get(name, _NO_DEFAULT), name in _JSON_FIELDS)
    for name in JOB_FIELDS
)
_COLUMN_SETS: dict[tuple[str, ...], frozenset[str]] = {}


def _single_parameters(job: Job) -> tuple[frozenset[str], dict[str, Any]]:
    """:func:`_push_parameters` of one job, as scalars (the hot path of ``push``)."""
    columns: list[str] = []
    parameters: dict[str, Any] = {"p_queues": [job.queue]}
    for name, parameter, getter, default, is_json in _SINGLE_FIELDS:
        value = getter(job)
        if value is default or (default is not _NO_DEFAULT and value == default):
            continue
        columns.append(name)
        parameters[parameter] = json_text(value) if is_json else value
    key = tuple(columns)
    column_set = _COLUMN_SETS.get(key)
    if column_set is None:
        column_set = _COLUMN_SETS[key] = frozenset(columns)
    return column_set, parameters


def _json_object(value: Mapping[str, Any], encoded: dict[int, str]) -> str:
    """``value`` as JSON text, encoded once per batch however many jobs share it."""
    text = encoded.get(id(value))
    if text is None:
        text = encoded[id(value)] = json_text(value) if value else "{}"
    return text


def _autocommits(conn: HotExecutable) -> bool:
    return isinstance(conn, asyncpg.Connection) and not conn.is_in_transaction()


async def _commits_each_statement(conn: HotExecutable) -> bool:
    """Whether ``conn``, the caller's connection or session, is in ``AUTOCOMMIT``: each
    statement of a split batch would commit on its own, so a failing one (an unknown
    queue) would leave the earlier ones stored. (A bare asyncpg connection gets a
    transaction of its own.)"""
    if isinstance(conn, asyncpg.Connection):
        return False
    connection = await conn.connection() if isinstance(conn, AsyncSession) else conn
    return _dbapi_autocommits(connection.sync_connection)


def _sync_connection(conn: SyncExecutable) -> Connection:
    return conn.connection() if isinstance(conn, Session) else conn


def _dbapi_autocommits(connection: Connection | None) -> bool:
    """Whether the driver connection under ``connection`` commits every statement
    (psycopg, psycopg2 and SQLAlchemy's asyncpg adapter all say so as ``autocommit``)."""
    if connection is None:
        return False
    return bool(getattr(connection.connection.dbapi_connection, "autocommit", False))


def unknown_queue(jobs: Sequence[Job], known: Sequence[str]) -> UnknownQueueError:
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
