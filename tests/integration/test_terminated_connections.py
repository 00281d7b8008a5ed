"""Connections the server ended while they sat in chancy's pool (``pg_terminate_backend``,
an idle-session timeout, a proxy, a failover) are replaced, not handed to the next
statement: the call right after the cut works."""

from __future__ import annotations

import asyncpg
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from tests.support import tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

ROUNDS = 5


async def end_every_other_session(database_url: URL) -> int:
    """Terminate every session on the test database but this one, and return how many
    once they are gone: ``pg_terminate_backend`` only signals a backend, and a statement
    sent before it has closed its socket is cut off mid-statement (a different case)."""
    admin = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        others = await admin.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        ended = await admin.fetch(
            "SELECT pid FROM unnest($1::int[]) AS pid WHERE pg_terminate_backend(pid)",
            [row["pid"] for row in others],
        )
        pids = [row["pid"] for row in ended]
        gone = "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = ANY($1::int[]))"
        await until_async(lambda: admin.fetchval(gone, pids), what="the ended sessions to go")
        return len(pids)
    finally:
        await admin.close()


async def test_a_push_right_after_the_server_ended_the_pooled_connection_succeeds(
    chancy: Chancy, database_url: URL
) -> None:
    job = Job.from_func(tasks.greet, kwargs={"name": "x"})
    for _ in range(ROUNDS):
        await chancy.push("default", job)  # a connection now waits in the pool
        assert await end_every_other_session(database_url) >= 1
        reference = await chancy.push("default", job)
        assert await chancy.get_job(reference) is not None


async def test_a_read_right_after_the_server_ended_the_pooled_connection_succeeds(
    chancy: Chancy, database_url: URL
) -> None:
    reference = await chancy.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
    for _ in range(ROUNDS):
        assert await chancy.get_job(reference) is not None
        assert await end_every_other_session(database_url) >= 1
        assert await chancy.get_job(reference) is not None
