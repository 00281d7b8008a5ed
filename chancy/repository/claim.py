"""Claiming jobs: one statement starts up to ``limit`` ready jobs of a queue, lowest
priority value first, then in arrival order.

There are two claims behind :meth:`ClaimRepository.claim_available`:

- the plain claim, for a queue with no limits: no locks but the rows' own, so any number
  of workers claim side by side;
- the limited claim, for a queue that is paused, has cluster-wide limits, or has jobs with
  concurrency or rate keys: it locks the queue's row first, so the queue's claimers take
  turns and each counts what the others started.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa

from chancy.jobs import QueuedJob
from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import PENDING, RUNNING, SECOND, jobs, queues

__all__ = ["CLAIM_WINDOW", "LEASE_SECONDS_DEFAULT", "ClaimRepository"]

LEASE_SECONDS_DEFAULT = 30.0
CLAIM_WINDOW = 1000
"""How many of a limited queue's first ready jobs the limited claim ranks by key."""

_WHAT = "the claim"
_q = queues.alias("q")
_PAUSED = "q.paused AND (q.resume_at IS NULL OR q.resume_at > now())"
_QUEUE_HELD_BACK = (
    f"({_PAUSED} OR q.keyed OR q.global_concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)"
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
        sa.select(jobs.c.id)
        .where(
            jobs.c.queue == sa.bindparam("p_queue"),
            jobs.c.state == PENDING,
            jobs.c.concurrency_key.is_(None),
            jobs.c.rate_key.is_(None),
            ~held_back,
        )
        .order_by(jobs.c.priority, jobs.c.id)
        .limit(sa.bindparam("p_limit"))
        .with_for_update(skip_locked=True)
        .cte("ready")
    )
    return (
        sa.update(jobs)
        .where(jobs.c.id == ready.c.id)
        .values(
            state=RUNNING,
            attempts=jobs.c.attempts + 1,
            started_at=sa.func.now(),
            worker_id=sa.bindparam("p_worker_id"),
            lease_expires_at=sa.func.now()
            + SECOND * sa.bindparam("p_lease_seconds", type_=sa.Double),
        )
        .returning(*jobs.c)
    )


_CLAIM = Statement(_claim_statement(), what=_WHAT)

_LOCK_QUEUE = Statement(
    sa.select(sa.literal_column(_PAUSED).label("paused"))
    .select_from(_q)
    .where(_q.c.name == sa.bindparam("p_queue"))
    .with_for_update(of=_q),
    what=_WHAT,
)
# The limited claim, in a transaction after locking the queue's row. Start times come
# from clock_timestamp() (not the transaction's start), so they grow from one claim to
# the next and every window of ``rate_period`` holds at most ``rate_limit`` starts. Keys
# are counted among the first ``p_window`` ready jobs, ranked within each key. Written
# as text: window functions over a LIMITed subquery read more plainly in SQL.
_CLAIM_LIMITED = Statement(
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
    ),
    what=_WHAT,
)


class ClaimRepository(Repository):
    """Starting jobs."""

    async def claim_available(
        self,
        conn: HotExecutable,
        queue: str,
        limit: int,
        worker_id: str,
        *,
        lease_seconds: float = LEASE_SECONDS_DEFAULT,
        limited: bool = False,
    ) -> list[QueuedJob]:
        """Start up to ``limit`` ready jobs of ``queue`` for ``worker_id``: lowest
        priority value first, then in arrival order. Returns them in that order,
        ``running`` with a lease of ``lease_seconds``.

        ``limited``: the queue is (or may be) paused or limited: honour its cluster-wide
        limits and its jobs' keys, taking turns with its other claimers; a paused queue
        gives nothing. Without it, a paused or limited queue gives nothing either (the
        plain claim leaves such queues alone), so a claimer that has not yet heard of a
        pause or a limit cannot break it."""
        parameters = {
            "p_queue": queue,
            "p_limit": limit,
            "p_worker_id": worker_id,
            "p_lease_seconds": lease_seconds,
        }
        if limited:
            rows = await self._claim_limited(conn, parameters)
        else:
            rows = await _CLAIM.rows(conn, parameters, timeouts=self.timeouts)
        claimed = [QueuedJob.from_row(row) for row in rows]
        claimed.sort(key=lambda job: (job.priority, job.id))
        return claimed

    async def _claim_limited(
        self, conn: HotExecutable, parameters: dict[str, Any]
    ) -> Sequence[Any]:
        if isinstance(conn, asyncpg.Connection):
            async with conn.transaction():
                return await self._claim_limited_in_transaction(conn, parameters)
        return await self._claim_limited_in_transaction(conn, parameters)

    async def _claim_limited_in_transaction(
        self, conn: HotExecutable, parameters: dict[str, Any]
    ) -> Sequence[Any]:
        lock = await _LOCK_QUEUE.rows(
            conn, {"p_queue": parameters["p_queue"]}, timeouts=self.timeouts
        )
        if not lock or lock[0]["paused"]:
            return []
        window = max(CLAIM_WINDOW, parameters["p_limit"])
        return await _CLAIM_LIMITED.rows(
            conn, {**parameters, "p_window": window}, timeouts=self.timeouts
        )
