"""The live workers: a row per worker process, written at its start, moved on by its
heartbeat, deleted at its clean stop, and pruned by the leader once it stops beating."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert

from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import RUNNING, SECOND, jobs, leader, workers

__all__ = ["WorkerInfo", "WorkerPresence", "WorkerRepository"]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerPresence:
    """What a worker says of itself in its row: its id, host, pid, queues and the jobs it
    runs at once (the sum of its queues' concurrency)."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's row as the dashboard shows it: its presence, when it started and last
    beat, whether it leads the cluster, and how many jobs it runs now."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    is_leader: bool
    running: int


def _beat_statement() -> sa.Executable:
    """Write the worker's row, or move its heartbeat on: an upsert, so a row the leader
    pruned (its worker was silent too long) comes back at the next beat. Every beat
    writes what the worker says of itself: a process that took over the id (another
    one's ``worker_id=``) is shown as the latest writer, started when it took over."""
    insert = pg_insert(workers).values(
        id=sa.bindparam("p_id"),
        host=sa.bindparam("p_host"),
        pid=sa.bindparam("p_pid", type_=sa.Integer),
        queues=sa.bindparam("p_queues", type_=ARRAY(sa.Text)),
        concurrency=sa.bindparam("p_concurrency", type_=sa.Integer),
        heartbeat_at=sa.func.now(),
        expires_at=sa.func.now() + SECOND * sa.bindparam("p_ttl", type_=sa.Double),
    )
    return insert.on_conflict_do_update(
        index_elements=[workers.c.id],
        set_={
            "host": insert.excluded.host,
            "pid": insert.excluded.pid,
            "queues": insert.excluded.queues,
            "concurrency": insert.excluded.concurrency,
            "started_at": sa.case(
                (_same_process(insert.excluded.host, insert.excluded.pid), workers.c.started_at),
                else_=sa.func.now(),
            ),
            "heartbeat_at": sa.func.now(),
            "expires_at": insert.excluded.expires_at,
        },
    )


def _same_process(
    host: sa.ColumnElement[str], pid: sa.ColumnElement[int]
) -> sa.ColumnElement[bool]:
    """Whether the row was written by the process on ``host`` with ``pid``."""
    return sa.and_(workers.c.host == host, workers.c.pid == pid)


def _prune_statement() -> sa.Executable:
    """Delete up to ``:limit`` rows of workers whose heartbeat stopped (expired)."""
    doomed = (
        sa.select(workers.c.id)
        .where(workers.c.expires_at < sa.func.now())
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
        .with_for_update(skip_locked=True)
        .cte("doomed")
    )
    deleted = (
        sa.delete(workers).where(workers.c.id == doomed.c.id).returning(workers.c.id).cte("deleted")
    )
    return sa.select(sa.func.count().label("n")).select_from(deleted)


def _live_statement() -> sa.Executable:
    """Every worker whose row has not expired, oldest first, with whether it holds a live
    leader lease and how many jobs it runs (from the running jobs' partial index)."""
    running = (
        sa.select(jobs.c.worker_id, sa.func.count().label("n"))
        .where(jobs.c.state == RUNNING)
        .group_by(jobs.c.worker_id)
        .subquery("running")
    )
    leads = sa.exists(
        sa.select(leader.c.name).where(
            leader.c.worker_id == workers.c.id, leader.c.expires_at > sa.func.now()
        )
    )
    return (
        sa.select(
            *workers.c,
            leads.label("is_leader"),
            sa.func.coalesce(running.c.n, 0).label("running"),
        )
        .select_from(workers.outerjoin(running, running.c.worker_id == workers.c.id))
        .where(workers.c.expires_at >= sa.func.now())
        .order_by(workers.c.started_at, workers.c.id)
    )


_BEAT = Statement(_beat_statement(), what="writing the worker's row")
# Only while the row is still this process's: another that took the id over keeps it.
_DELETE = Statement(
    sa.delete(workers).where(
        workers.c.id == sa.bindparam("p_id"),
        _same_process(sa.bindparam("p_host"), sa.bindparam("p_pid", type_=sa.Integer)),
    ),
    what="deleting the worker's row",
)
_PRUNE = Statement(_prune_statement(), what="pruning the rows of silent workers")
_LIVE = Statement(_live_statement(), what="reading the workers")


class WorkerRepository(Repository):
    """The rows of the live workers."""

    async def beat(self, conn: HotExecutable, presence: WorkerPresence, ttl: float) -> None:
        """Write the worker's row (at its start) or move its heartbeat on, so that it
        expires ``ttl`` seconds from now unless it beats again."""
        parameters: dict[str, Any] = {
            "p_id": presence.id,
            "p_host": presence.host,
            "p_pid": presence.pid,
            "p_queues": list(presence.queues),
            "p_concurrency": presence.concurrency,
            "p_ttl": ttl,
        }
        await _BEAT.rows(conn, parameters, timeouts=self.timeouts)

    async def delete(self, conn: HotExecutable, presence: WorkerPresence) -> None:
        """Delete the worker's row (its clean stop), unless another process (same id,
        another host or pid) wrote it since."""
        parameters = {"p_id": presence.id, "p_host": presence.host, "p_pid": presence.pid}
        await _DELETE.rows(conn, parameters, timeouts=self.timeouts)

    async def prune_expired_many(self, conn: HotExecutable, limit: int) -> int:
        """Delete up to ``limit`` rows of workers that stopped beating; returns how many."""
        rows = await _PRUNE.rows(conn, {"p_limit": limit}, timeouts=self.timeouts)
        return int(rows[0]["n"])

    async def list_live(self, conn: HotExecutable) -> list[WorkerInfo]:
        """Every worker whose row has not expired, oldest first."""
        rows = await _LIVE.rows(conn, {}, timeouts=self.timeouts)
        return [WorkerInfo(**{**dict(row), "queues": tuple(row["queues"] or ())}) for row in rows]
