"""Claiming jobs: one statement starts up to ``limit`` ready jobs of a queue, lowest
priority value first, then in arrival order.

There are two claims behind :meth:`ClaimRepository.claim_available`:

- the plain claim, for a queue with no limits: no locks but the rows' own, so any number
  of workers claim side by side;
- the limited claim, for a queue that is paused, has cluster-wide limits, or has jobs with
  concurrency or rate keys: it takes the queue's turn first (an advisory lock), so the
  queue's claimers take turns and each counts what the others started; when the first
  jobs are all held back by their keys, it takes from each key what the key can start,
  so no key's backlog starves the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa

from chancy.jobs import QueuedJob
from chancy.queue import RATE_PERIOD_MAX
from chancy.repository.base import Repository
from chancy.repository.runner import HotExecutable, Statement
from chancy.repository.tables import PENDING, RUNNING, SECOND, jobs, queues
from chancy.repository.workflows import with_parent_results

__all__ = ["CLAIM_WINDOW", "LEASE_SECONDS_DEFAULT", "NEW_FENCE", "ClaimRepository"]

LEASE_SECONDS_DEFAULT = 30.0
CLAIM_WINDOW = 1000
"""How many of a limited queue's first ready jobs with keys the limited claim ranks
before it looks at each key on its own (when they hold too few that may start)."""

_WHAT = "the claim"
# The first key of pg_advisory_xact_lock(int, int) for a queue's limited claimers: the
# bytes of "chcl" as a signed 32-bit integer (the second key is the queue's name hashed).
_CLAIM_LOCK_CLASS = int.from_bytes(b"chcl", "big", signed=True)
_PERIOD_MAX = f"{RATE_PERIOD_MAX.total_seconds():.0f}"
_CANDIDATE_COLUMNS = (
    "id, priority, concurrency_key, concurrency_limit, rate_key, rate_limit, rate_period"
)
_q = queues.alias("q")
_PAUSED = "q.paused AND (q.resume_at IS NULL OR q.resume_at > now())"
_QUEUE_HELD_BACK = (
    f"({_PAUSED} OR q.keyed OR q.global_concurrency IS NOT NULL OR q.rate_limit IS NOT NULL)"
)


# The fencing token of a new attempt: 60 random bits of a version 4 UUID (the first 16
# hex digits, one of which is its version), drawn from the server's strong random source.
# Not random(): an application may seed that one (setseed, on a connection a worker
# later claims on), and two claims of one job would then draw the same token. Unlike a
# counter, a token does not come back when a server crash loses the claim that drew it:
# the next claim of that job draws anew, and two draws of one job agree once in 2**60.
NEW_FENCE = "('x' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16))::bit(64)::bigint"
# A claim sets its own transaction's synchronous_commit ('off' unless the worker wants
# durable claims): it may return before its commit reaches the disk. Safe because the
# fence is random: a claim lost in a crash leaves a worker with a token no row will ever
# name again, so its writes change nothing. Its outcome commits durably, which flushes
# the claim's commit (earlier in the WAL) with it. An uncorrelated subquery, so it runs
# once per statement, before any row is claimed.
_SYNCHRONOUS_COMMIT = sa.select(
    sa.func.set_config(
        "synchronous_commit", sa.bindparam("p_synchronous_commit", type_=sa.Text), True
    )
).scalar_subquery()


def _claim_statement() -> sa.Executable:
    """Claim up to ``:limit`` ready jobs of ``:queue`` in one statement.

    The CTE walks ``ix_chancy_jobs_claim`` in (priority, id) order and locks with SKIP
    LOCKED, so concurrent claimers never wait for each other nor take the same job. The
    UPDATE starts the attempt: a new random ``fence`` is the fencing token every later
    write about this attempt must name, and the lease says when another worker may take
    over. The statement also sets its own transaction's ``synchronous_commit``
    (:data:`_SYNCHRONOUS_COMMIT`).
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
        .where(jobs.c.id == ready.c.id, _SYNCHRONOUS_COMMIT.is_not(None))
        .values(
            state=RUNNING,
            attempts=jobs.c.attempts + 1,
            fence=sa.literal_column(NEW_FENCE),
            started_at=sa.func.now(),
            worker_id=sa.bindparam("p_worker_id"),
            lease_expires_at=sa.func.now()
            + SECOND * sa.bindparam("p_lease_seconds", type_=sa.Double),
        )
        .returning(*jobs.c)
    )


_CLAIM = Statement(_claim_statement(), what=_WHAT)

# The limited claim's turn: a transaction-scoped advisory lock per queue, so the queue's
# limited claimers take turns and each counts what the others started. Not a lock on the
# queue's row: an application's open transaction that pushed to the queue holds a
# key-share lock on that row (the push's check of its queue) until it commits, and claims
# must never wait for it. (Two queues whose names hash alike merely take turns too.)
_TAKE_TURN = Statement(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            sa.literal_column(str(_CLAIM_LOCK_CLASS)),
            sa.func.hashtext(sa.bindparam("p_queue", type_=sa.Text)),
        ),
        sa.func.set_config(
            "synchronous_commit", sa.bindparam("p_synchronous_commit", type_=sa.Text), True
        ),
    ),
    what=_WHAT,
)
# Whether a ranked candidate ``h`` may start: its rank within its concurrency key plus
# that key's running jobs within the key's limit, and its rank within its rate key plus
# that key's starts in its period within the key's rate limit.
_MAY_START = f"""
    (h.concurrency_key IS NULL OR h.c_rank + (
        SELECT count(*) FROM chancy_jobs AS r
        WHERE r.queue = :p_queue AND r.state = 'running'
          AND r.concurrency_key = h.concurrency_key
    ) <= h.concurrency_limit)
    AND (h.rate_key IS NULL OR h.r_rank + (
        SELECT count(*) FROM chancy_jobs AS r
        WHERE r.queue = :p_queue AND r.rate_key = h.rate_key AND r.started_at IS NOT NULL
          AND r.started_at > clock_timestamp()
              - interval '1 second' * least(h.rate_period, {_PERIOD_MAX})
    ) <= h.rate_limit)"""
_RANKS = """row_number() OVER (PARTITION BY concurrency_key ORDER BY priority, id) AS c_rank,
           row_number() OVER (PARTITION BY rate_key ORDER BY priority, id) AS r_rank"""
# The limited claim, in a transaction after taking the queue's turn. A paused queue (or
# one not declared) has no budget. Start times come from clock_timestamp() (not the
# transaction's start), so they grow from one claim to the next and every window of
# ``rate_period`` holds at most ``rate_limit`` starts (periods are capped at the longest
# a Job or Queue accepts, for rows written before that check).
#
# Jobs without keys: the first ``n`` (the budget) in (priority, id) order. Jobs with
# keys: the head, the first ``p_window`` of them, ranked within each key; usually it
# holds enough that may start. When it does not (the head is full of jobs whose keys
# are busy, such as one key's backlog of thousands), the head is "clogged" and each key
# offers its own first jobs, up to what it can start now (``room``): a skip scan lists
# the keys that have ready jobs, one index probe per key, so no key's backlog hides
# another key. The clogged path costs one probe per key with ready jobs, never one per
# job; the usual path costs the head. Together ranked again, and claimed in (priority,
# id) order up to the budget. The lock and the UPDATE take their ids as an array, so
# PostgreSQL looks them up by primary key whatever it guessed they would number (a
# guess too high made it scan the table). Written as text: recursive CTEs and LATERAL
# joins read more plainly in SQL.
_CLAIM_LIMITED = Statement(
    sa.text(
        f"""
WITH RECURSIVE settings AS (
    SELECT paused AND (resume_at IS NULL OR resume_at > now()) AS paused,
           global_concurrency, rate_limit, least(rate_period, {_PERIOD_MAX}) AS rate_period
    FROM chancy_queues WHERE name = :p_queue
),
budget AS (
    SELECT CASE WHEN coalesce((SELECT paused FROM settings), true) THEN 0
    ELSE greatest(0, least(
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
    )) END AS n
),
unkeyed AS (
    SELECT id, priority FROM chancy_jobs
    WHERE queue = :p_queue AND state = 'pending'
      AND concurrency_key IS NULL AND rate_key IS NULL
    ORDER BY priority, id LIMIT (SELECT n FROM budget)
),
head AS (
    SELECT {_CANDIDATE_COLUMNS} FROM chancy_jobs
    WHERE queue = :p_queue AND state = 'pending'
      AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL)
      AND (SELECT n FROM budget) > 0
    ORDER BY priority, id LIMIT :p_window
),
head_may_start AS (
    SELECT h.id, h.priority FROM (SELECT *, {_RANKS} FROM head) AS h
    WHERE {_MAY_START}
),
clogged AS (
    SELECT (SELECT count(*) FROM head) >= :p_window
       AND (SELECT count(*) FROM head_may_start) + (SELECT count(*) FROM unkeyed)
           < (SELECT n FROM budget) AS yes
),
concurrency_keys(key) AS (
    (SELECT concurrency_key FROM chancy_jobs
     WHERE queue = :p_queue AND state = 'pending' AND concurrency_key IS NOT NULL
       AND (SELECT yes FROM clogged)
     ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT concurrency_key FROM chancy_jobs
            WHERE queue = :p_queue AND state = 'pending' AND concurrency_key IS NOT NULL
              AND concurrency_key > k.key
            ORDER BY concurrency_key LIMIT 1)
    FROM concurrency_keys AS k WHERE k.key IS NOT NULL
),
rate_keys(key) AS (
    (SELECT rate_key FROM chancy_jobs
     WHERE queue = :p_queue AND state = 'pending' AND rate_key IS NOT NULL
       AND concurrency_key IS NULL AND (SELECT yes FROM clogged)
     ORDER BY rate_key LIMIT 1)
    UNION ALL
    SELECT (SELECT rate_key FROM chancy_jobs
            WHERE queue = :p_queue AND state = 'pending' AND rate_key IS NOT NULL
              AND concurrency_key IS NULL AND rate_key > k.key
            ORDER BY rate_key LIMIT 1)
    FROM rate_keys AS k WHERE k.key IS NOT NULL
),
concurrency_room AS (
    SELECT k.key, greatest(0, least(:p_limit, first.concurrency_limit - (
        SELECT count(*) FROM chancy_jobs AS r
        WHERE r.queue = :p_queue AND r.state = 'running' AND r.concurrency_key = k.key
    ))) AS room
    FROM concurrency_keys AS k CROSS JOIN LATERAL (
        SELECT concurrency_limit FROM chancy_jobs
        WHERE queue = :p_queue AND state = 'pending' AND concurrency_key = k.key
        ORDER BY priority, id LIMIT 1
    ) AS first
),
rate_room AS (
    SELECT k.key, greatest(0, least(:p_limit, first.rate_limit - (
        SELECT count(*) FROM chancy_jobs AS r
        WHERE r.queue = :p_queue AND r.rate_key = k.key AND r.started_at IS NOT NULL
          AND r.started_at > clock_timestamp()
              - interval '1 second' * least(first.rate_period, {_PERIOD_MAX})
    ))) AS room
    FROM rate_keys AS k CROSS JOIN LATERAL (
        SELECT rate_limit, rate_period FROM chancy_jobs
        WHERE queue = :p_queue AND state = 'pending' AND rate_key = k.key
          AND concurrency_key IS NULL
        ORDER BY priority, id LIMIT 1
    ) AS first
),
per_key AS (
    SELECT * FROM head
    UNION
    SELECT j.* FROM concurrency_room AS c CROSS JOIN LATERAL (
        SELECT {_CANDIDATE_COLUMNS} FROM chancy_jobs
        WHERE queue = :p_queue AND state = 'pending' AND concurrency_key = c.key
        ORDER BY priority, id LIMIT c.room
    ) AS j
    UNION
    SELECT j.* FROM rate_room AS r CROSS JOIN LATERAL (
        SELECT {_CANDIDATE_COLUMNS} FROM chancy_jobs
        WHERE queue = :p_queue AND state = 'pending' AND rate_key = r.key
          AND concurrency_key IS NULL
        ORDER BY priority, id LIMIT r.room
    ) AS j
),
eligible AS (
    SELECT id, priority FROM unkeyed
    UNION ALL
    SELECT id, priority FROM head_may_start WHERE NOT (SELECT yes FROM clogged)
    UNION ALL
    SELECT h.id, h.priority FROM (SELECT *, {_RANKS} FROM per_key) AS h
    WHERE (SELECT yes FROM clogged) AND {_MAY_START}
    ORDER BY priority, id
    LIMIT (SELECT n FROM budget)
),
locked AS (
    SELECT id FROM chancy_jobs
    WHERE id = ANY(ARRAY(SELECT id FROM eligible)) AND state = 'pending'
    FOR UPDATE SKIP LOCKED
)
UPDATE chancy_jobs SET
    state = 'running',
    attempts = chancy_jobs.attempts + 1,
    fence = {NEW_FENCE},
    started_at = clock_timestamp(),
    worker_id = :p_worker_id,
    lease_expires_at = clock_timestamp() + interval '1 second' * :p_lease_seconds
WHERE chancy_jobs.id = ANY(ARRAY(SELECT id FROM locked))
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
        durable: bool = False,
    ) -> list[QueuedJob]:
        """Start up to ``limit`` ready jobs of ``queue`` for ``worker_id``: lowest
        priority value first, then in arrival order. Returns them in that order,
        ``running`` with a lease of ``lease_seconds``.

        ``limited``: the queue is (or may be) paused or limited: honour its cluster-wide
        limits and its jobs' keys, taking turns with its other claimers; a paused queue
        gives nothing. Without it, a paused or limited queue gives nothing either (the
        plain claim leaves such queues alone), so a claimer that has not yet heard of a
        pause or a limit cannot break it.

        ``durable``: the claim's commit waits for the disk (``synchronous_commit = on``);
        by default it does not (``off``), which the random fencing token makes safe: a
        claim a crash loses only lets its job run again under a new token. On a caller's
        connection in a transaction, the setting holds for that transaction."""
        parameters = {
            "p_queue": queue,
            "p_limit": limit,
            "p_worker_id": worker_id,
            "p_lease_seconds": lease_seconds,
            "p_synchronous_commit": "on" if durable else "off",
        }
        if limited:
            rows = await self._claim_limited(conn, parameters)
        else:
            rows = await _CLAIM.rows(conn, parameters, timeouts=self.timeouts)
        claimed = [QueuedJob.from_row(row) for row in rows]
        claimed.sort(key=lambda job: (job.priority, job.id))
        return await with_parent_results(conn, claimed, timeouts=self.timeouts)

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
        # Two statements: the second's snapshot is taken once the turn is ours, so it
        # sees every start that the queue's earlier claimers committed.
        turn = {key: parameters[key] for key in ("p_queue", "p_synchronous_commit")}
        await _TAKE_TURN.rows(conn, turn, timeouts=self.timeouts)
        window = max(CLAIM_WINDOW, parameters["p_limit"])
        return await _CLAIM_LIMITED.rows(
            conn, {**parameters, "p_window": window}, timeouts=self.timeouts
        )
