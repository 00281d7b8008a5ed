"""A worker whose start-up statement has its connection cut mid-statement (the server ends
the session, a proxy drops it) starts anyway: every start-up statement is safe to repeat,
so it runs again on another connection. Each start-up statement is made to wait on a lock
that this test holds, its session is ended while it waits, then the lock is let go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.migrations import VERSION_TABLE
from chancy.queue import Queue
from chancy.repository.schedules import _STORE_LOCK_KEY
from chancy.states import JobState
from chancy.worker import Worker
from tests.support import tasks
from tests.support.servers import asyncpg_dsn
from tests.support.waiting import until_async

# What each start-up statement waits for: (the lock statement, what it guards).
LOCKS = {
    "the schema check": f"LOCK TABLE {VERSION_TABLE} IN ACCESS EXCLUSIVE MODE",
    "the queues' declaration": "LOCK TABLE chancy_queues IN ACCESS EXCLUSIVE MODE",
    "the schedules' store": f"SELECT pg_advisory_xact_lock({_STORE_LOCK_KEY})",
}


@pytest.fixture
async def admin(database_url: URL) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    yield connection
    await connection.close()


async def end_the_waiting_session(admin: asyncpg.Connection) -> int:
    """End the session that waits for a lock this test holds; returns its pid."""
    waiting = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )

    found: list[int] = []

    async def waiter() -> bool:
        pid = await admin.fetchval(waiting)
        if pid is None:
            # A session waiting for an advisory lock shows it in pg_locks.
            pid = await admin.fetchval(
                "SELECT pid FROM pg_locks WHERE NOT granted AND locktype = 'advisory' "
                "AND pid <> pg_backend_pid() LIMIT 1"
            )
        if pid is not None:
            found.append(int(pid))
        return bool(found)

    await until_async(waiter, what="a start-up statement to wait for the lock")
    pid = found[0]
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    return pid


@pytest.mark.parametrize("step", sorted(LOCKS))
async def test_a_worker_starts_though_a_start_up_statement_lost_its_connection(
    database_url: URL, admin: asyncpg.Connection, step: str
) -> None:
    async with Chancy(database_url, queues=[Queue(name="default", polling_interval=0.2)]) as app:
        await app.migrate()
        worker = Worker(app)
        async with admin.transaction():
            await admin.execute(LOCKS[step])
            starting = asyncio.create_task(worker.start())
            await end_the_waiting_session(admin)
        try:
            await asyncio.wait_for(starting, timeout=30)
            reference = await app.push("default", Job.from_func(tasks.greet, kwargs={"name": "x"}))
            done = await app.wait_for_job(reference, timeout=10)
            assert done.state is JobState.SUCCEEDED
        finally:
            await worker.stop()
