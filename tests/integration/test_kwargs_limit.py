"""Oversized kwargs are refused at push, with a clear error, before anything is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from chancy import sync
from chancy.app import Chancy
from chancy.errors import ConfigurationError, InvalidKwargsError
from chancy.executor import Job
from chancy.models import JobRow
from tests.support import tasks

LIMIT = 1000


def job_of(size: int) -> Job:
    """A job whose kwargs are about ``size`` bytes of JSON."""
    return Job.from_func(tasks.anything, kwargs={"blob": "x" * size})


@pytest.fixture
async def app(database_url: URL) -> AsyncIterator[Chancy]:
    async with Chancy(database_url, max_kwargs_bytes=LIMIT) as chancy:
        yield chancy


async def stored(app: Chancy) -> int:
    async with app.engine.connect() as connection:
        return int(await connection.scalar(sa.select(sa.func.count()).select_from(JobRow)) or 0)


async def test_a_push_over_the_limit_names_size_limit_and_setting(app: Chancy) -> None:
    with pytest.raises(InvalidKwargsError) as caught:
        await app.push(job_of(2000))
    message = str(caught.value)
    assert "2,012 bytes of JSON" in message
    assert f"limit of {LIMIT:,}" in message
    assert "max_kwargs_bytes" in message
    assert "tests.support.tasks.anything" in message
    assert await stored(app) == 0


async def test_a_batch_with_one_job_over_the_limit_stores_none_of_it(app: Chancy) -> None:
    with pytest.raises(InvalidKwargsError, match="job 1 of the batch"):
        await app.push_many("default", [job_of(10), job_of(5000), job_of(10)])
    assert await stored(app) == 0


async def test_kwargs_at_the_limit_are_stored(app: Chancy) -> None:
    await app.push(job_of(LIMIT - len('{"blob": ""}')))
    assert await stored(app) == 1


async def test_no_limit_stores_kwargs_of_any_size(database_url: URL) -> None:
    async with Chancy(database_url, max_kwargs_bytes=None) as app:
        await app.push(job_of(2 * 1024 * 1024))
        assert await stored(app) == 1


async def test_the_default_limit_is_one_mebibyte(chancy: Chancy) -> None:
    with pytest.raises(InvalidKwargsError, match="limit of 1,048,576"):
        await chancy.push(job_of(1024 * 1024))


async def test_a_sync_push_over_the_limit_stores_nothing(app: Chancy, database_url: URL) -> None:
    engine = sa.create_engine(database_url.set(drivername="postgresql+psycopg"))

    def push() -> None:
        with Session(engine) as session, session.begin():
            sync.push(session, "default", job_of(2000), max_kwargs_bytes=LIMIT)

    try:
        with pytest.raises(InvalidKwargsError, match="max_kwargs_bytes"):
            await asyncio.to_thread(push)
    finally:
        engine.dispose()
    assert await stored(app) == 0


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_the_limit_must_be_a_positive_number_of_bytes(limit: object) -> None:
    with pytest.raises(ConfigurationError, match="max_kwargs_bytes"):
        Chancy("postgresql://h/db", max_kwargs_bytes=limit)  # type: ignore[arg-type]
