"""Connections of the hot path beyond the pool's size are closed, not leaked."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy.engine import URL

from chancy import Job
from chancy.app import Chancy
from chancy.database import hot_connection
from tests.support.tasks import greet
from tests.support.waiting import until_async

PRODUCERS = 8


async def test_overflow_connections_are_closed_when_given_back(
    database_url: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    options = {"pool_size": 1, "max_overflow": PRODUCERS}
    async with Chancy(database_url, engine_options=options) as chancy:
        release = asyncio.Event()

        async def hold() -> None:
            async with hot_connection(chancy.engine):
                await release.wait()

        pool: Any = chancy.engine.sync_engine.pool
        holders = [asyncio.create_task(hold()) for _ in range(PRODUCERS)]
        await until_async(
            lambda: asyncio.sleep(0.01, pool.checkedout() == PRODUCERS), what="every connection out"
        )
        release.set()
        await asyncio.gather(*holders)
        job = Job.from_func(greet, kwargs={"name": "x"})
        await asyncio.gather(*(chancy.push(job) for _ in range(PRODUCERS * 4)))
        await chancy.wake_ups.flush()  # the wake-ups after the pushes take a connection too
        assert pool.checkedout() == 0
        assert pool.overflow() <= 0
    problems = [r.getMessage() for r in caplog.records if "closing connection" in r.getMessage()]
    assert problems == []
