"""Queues: declaring them (with their cluster-wide limits), pausing them, reading them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chancy.events import EventKind
from chancy.queue import Queue, QueueInfo
from chancy.repository.announce import notify, queue_changed
from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement, SyncExecutable
from chancy.repository.tables import jobs, queues

__all__ = ["QueueRepository"]

_COLUMNS: tuple[sa.ColumnElement[Any], ...] = (
    queues.c.name,
    sa.literal_column(
        "chancy_queues.paused AND (chancy_queues.resume_at IS NULL "
        "OR chancy_queues.resume_at > now())"
    ).label("paused"),
    queues.c.resume_at,
    queues.c.global_concurrency,
    queues.c.rate_limit,
    queues.c.rate_period,
    queues.c.keyed,
)


def _declare_statement(*, settings: bool) -> sa.Executable:
    """Declare queues from parallel arrays. With ``settings``, a queue's cluster-wide
    limits are (re)written from the arrays, as the app's ``Queue`` objects state them,
    and workers are told when they change; without, a queue that exists is left as it is
    (a new one has no limits)."""
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
    insert = pg_insert(queues).from_select(
        ["name", "global_concurrency", "rate_limit", "rate_period"], sa.select(batch)
    )
    if not settings:
        return insert.on_conflict_do_nothing(index_elements=[queues.c.name])
    excluded = insert.excluded
    changed = sa.or_(
        queues.c.global_concurrency.is_distinct_from(excluded.global_concurrency),
        queues.c.rate_limit.is_distinct_from(excluded.rate_limit),
        queues.c.rate_period.is_distinct_from(excluded.rate_period),
    )
    upserted = (
        insert.on_conflict_do_update(
            index_elements=[queues.c.name],
            set_={
                "global_concurrency": excluded.global_concurrency,
                "rate_limit": excluded.rate_limit,
                "rate_period": excluded.rate_period,
                "updated_at": sa.func.now(),
            },
            where=changed,
        )
        .returning(queues.c.name)
        .cte("upserted")
    )
    return sa.select(sa.func.count(queue_changed(upserted.c.name))).select_from(upserted)


def _pause_statement() -> sa.Executable:
    """Pause (or resume) one queue and tell every worker: ``queue_changed`` makes them
    reload its settings, and ``pushed`` wakes their producers on a resume."""
    updated = (
        sa.update(queues)
        .where(queues.c.name == sa.bindparam("p_name"))
        .values(
            paused=sa.bindparam("p_paused", type_=sa.Boolean),
            resume_at=sa.bindparam("p_resume_at", type_=sa.DateTime(timezone=True)),
            updated_at=sa.func.now(),
        )
        .returning(queues.c.name)
        .cte("updated")
    )
    pushed = sa.func.json_build_object("event", EventKind.PUSHED.value, "queue", updated.c.name)
    return sa.select(updated.c.name, queue_changed(updated.c.name), notify(pushed)).select_from(
        updated
    )


_DECLARE = Statement(_declare_statement(settings=False), what="declaring queues")
_DECLARE_SETTINGS = Statement(_declare_statement(settings=True), what="declaring queues")
_PAUSE = Statement(_pause_statement(), what="pausing or resuming the queue")
_LIST = Statement(sa.select(*_COLUMNS).order_by(queues.c.name), what="reading the queues")
_GET = Statement(
    sa.select(*_COLUMNS).where(queues.c.name == sa.bindparam("p_name")), what="reading the queue"
)
_NAMES = Statement(sa.select(queues.c.name), what="reading the queues")
_LOCK = Statement(
    sa.select(queues.c.name).where(queues.c.name == sa.bindparam("p_name")).with_for_update(),
    what="deleting the queue",
)


def _locked_states_statement() -> sa.Executable:
    """How many jobs of a queue are in each state, locking them: a claim skips locked
    rows, so none of them starts running before the deletion commits."""
    locked = (
        sa.select(jobs.c.state)
        .where(jobs.c.queue == sa.bindparam("p_name"))
        .with_for_update()
        .subquery("locked")
    )
    return sa.select(locked.c.state, sa.func.count().label("n")).group_by(locked.c.state)


def _delete_jobs_statement() -> sa.Executable:
    deleted = (
        sa.delete(jobs)
        .where(jobs.c.queue == sa.bindparam("p_name"))
        .returning(jobs.c.id)
        .cte("deleted")
    )
    return sa.select(sa.func.count().label("n")).select_from(deleted)


_LOCKED_STATES = Statement(_locked_states_statement(), what="deleting the queue")
_DELETE_JOBS = Statement(_delete_jobs_statement(), what="deleting the queue's jobs")
_DELETE = Statement(
    sa.delete(queues).where(queues.c.name == sa.bindparam("p_name")), what="deleting the queue"
)


class QueueRepository(Repository):
    """Declared queues and their settings."""

    async def declare_many(self, conn: HotExecutable, queues: Sequence[Queue | str]) -> None:
        """Declare ``queues``. A :class:`Queue` that states its limits (the default)
        replaces the stored ones, and workers are told when they change; a name, or a
        Queue with ``declare_limits=False``, only makes sure the queue exists."""
        for statement, parameters in _declarations(queues):
            await statement.rows(conn, parameters, timeouts=self.timeouts)

    def declare_many_sync(self, conn: SyncExecutable, queues: Sequence[Queue | str]) -> None:
        """:meth:`declare_many` on a synchronous ``Connection`` or ``Session``."""
        for statement, parameters in _declarations(queues):
            statement.rows_sync(conn, parameters, timeouts=self.timeouts)

    async def list_all(self, conn: HotExecutable) -> list[QueueInfo]:
        """Every declared queue, by name."""
        rows = await _LIST.rows(conn, {}, timeouts=self.timeouts)
        return [QueueInfo(**dict(row)) for row in rows]

    async def get(self, conn: HotExecutable, name: str) -> QueueInfo | None:
        """The declared queue ``name``, or None."""
        rows = await _GET.rows(conn, {"p_name": name}, timeouts=self.timeouts)
        return QueueInfo(**dict(rows[0])) if rows else None

    async def names(self, conn: HotExecutable) -> list[str]:
        """The names of the declared queues."""
        return [row["name"] for row in await _NAMES.rows(conn, {}, timeouts=self.timeouts)]

    async def pause(
        self, conn: HotExecutable, name: str, *, paused: bool, resume_at: datetime | None
    ) -> bool:
        """Pause or resume ``name``; False if no such queue is declared."""
        parameters = {"p_name": name, "p_paused": paused, "p_resume_at": resume_at}
        return bool(await _PAUSE.rows(conn, parameters, timeouts=self.timeouts))

    async def lock_for_delete(self, conn: HotExecutable, name: str) -> dict[str, int] | None:
        """Lock the queue ``name`` and its jobs, in the caller's transaction: a push to it
        waits (and then fails), a claim skips its jobs. How many of its jobs are in each
        state (states with none are absent); None if no such queue is declared."""
        if not await _LOCK.rows(conn, {"p_name": name}, timeouts=self.timeouts):
            return None
        rows = await _LOCKED_STATES.rows(conn, {"p_name": name}, timeouts=self.timeouts)
        return {str(row["state"]): int(row["n"]) for row in rows}

    async def delete(self, conn: HotExecutable, name: str) -> int:
        """Delete the queue ``name`` and its jobs (lock them first: :meth:`lock_for_delete`);
        how many jobs were deleted."""
        (row,) = await _DELETE_JOBS.rows(conn, {"p_name": name}, timeouts=self.timeouts)
        await _DELETE.rows(conn, {"p_name": name}, timeouts=self.timeouts)
        return int(row["n"])


def _declarations(queues: Sequence[Queue | str]) -> list[tuple[Statement, dict[str, list[Any]]]]:
    """The statements that declare ``queues``: one for the queues that state their limits,
    one for the others (names), each only if it has queues."""
    given = [Queue.named(item) if isinstance(item, str) else item for item in queues]
    stating = [queue for queue in given if queue.declare_limits]
    named = [queue for queue in given if not queue.declare_limits]
    return [
        (statement, _declare_parameters(batch))
        for statement, batch in ((_DECLARE_SETTINGS, stating), (_DECLARE, named))
        if batch
    ]


def _declare_parameters(given: Sequence[Queue]) -> dict[str, list[Any]]:
    return {
        "p_names": [q.name for q in given],
        "p_global": [q.global_concurrency for q in given],
        "p_rate_limits": [q.rate_limit for q in given],
        "p_rate_periods": [
            q.rate_period.total_seconds() if q.rate_limit is not None else None for q in given
        ],
    }
