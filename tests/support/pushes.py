"""Jobs that name themselves, and a count of the names stored: for tests of concurrent
pushes, where each push's job must be stored exactly once."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.executor import Job
from chancy.models import JobRow
from tests.support import tasks

__all__ = ["greet", "names_stored"]


def greet(name: str) -> Job:
    """A job of :func:`tests.support.tasks.greet` whose ``name`` kwarg tells it apart."""
    return Job.from_func(tasks.greet, kwargs={"name": name})


async def names_stored(chancy: Chancy) -> Counter[str]:
    """How many jobs hold each ``name`` kwarg."""
    async with chancy.engine.connect() as connection:
        rows = await connection.execute(sa.select(JobRow.kwargs["name"].astext))
        return Counter(name for (name,) in rows)
