"""Jobs that name themselves, and a count of the names stored: for tests of concurrent
pushes, where each push's job must be stored exactly once."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from chancy.app import Chancy
from chancy.executor import Job
from chancy.models import JobRow
from tests.support import tasks

__all__ = ["greet", "locked_queue", "names_stored"]


def greet(name: str) -> Job:
    """A job of :func:`tests.support.tasks.greet` whose ``name`` kwarg tells it apart."""
    return Job.from_func(tasks.greet, kwargs={"name": name})


async def names_stored(chancy: Chancy) -> Counter[str]:
    """How many jobs hold each ``name`` kwarg."""
    async with chancy.engine.connect() as connection:
        rows = await connection.execute(sa.select(JobRow.kwargs["name"].astext))
        return Counter(name for (name,) in rows)


@contextlib.asynccontextmanager
async def locked_queue(chancy: Chancy, name: str | None = None) -> AsyncIterator[AsyncConnection]:
    """A transaction holding the row lock of the queue ``name`` (of every queue if None),
    as an administrator's would: a push to it waits; rolled back when the block ends."""
    async with chancy.engine.connect() as locker:
        await locker.begin()
        statement = "SELECT * FROM chancy_queues" + ("" if name is None else " WHERE name = :name")
        await locker.execute(sa.text(statement + " FOR UPDATE"), {"name": name})
        try:
            yield locker
        finally:
            await locker.rollback()
