"""The thread that renews a worker's leases and runs its election, when the worker's
start is cancelled mid-election (a lifespan cancelled at startup, a timeout around
``Worker.start``)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.worker.lease_keeper import LeaseKeeper
from tests.support.waiting import until_async


async def test_a_start_cancelled_mid_election_ends_the_thread_without_an_error(
    database_url: URL,
) -> None:
    async with Chancy(database_url) as chancy:
        keeper = LeaseKeeper(
            chancy.engine,
            "w-cancelled",
            lease_seconds=30,
            leader_ttl=10,
            running=list,
            unwritten=list,
            lost=lambda job_id: None,
        )
        async with chancy.engine.connect() as blocker:
            await blocker.execute(sa.text("LOCK TABLE chancy_leader IN ACCESS EXCLUSIVE MODE"))
            start = asyncio.create_task(keeper.start())

            async def electing() -> bool:
                rows = await chancy.engine.connect()
                try:
                    waiting = await rows.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_locks WHERE relation = "
                            "'chancy_leader'::regclass AND NOT granted"
                        )
                    )
                finally:
                    await rows.close()
                return bool(waiting)

            await until_async(electing, timeout=10, what="the election waiting for the lock")
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            await blocker.rollback()
        await keeper.stop()  # the thread's error, if any, fails the test (filterwarnings)
    assert keeper.leadership.term is None
