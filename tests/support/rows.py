"""Job rows written by hand, as anyone who may INSERT into chancy's jobs table could."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.models import JobRow


async def insert_job_row(engine: AsyncEngine, **values: object) -> int:
    """Insert a job row with ``values`` (ready now, in queue ``default`` unless given);
    returns its id. Nothing checks the values: that is the point."""
    values.setdefault("queue", "default")
    async with engine.begin() as connection:
        job_id = await connection.scalar(sa.insert(JobRow).values(**values).returning(JobRow.id))
    assert job_id is not None
    return int(job_id)
