"""The shop's fixtures, on chancy's pytest plugin: ``chancy_dsn`` is a fresh database per
test (chancy's schema in it); the shop adds its own tables and its own Chancy."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from shop import db
from shop.models import Base

from chancy import Chancy


@pytest.fixture
async def shop(chancy_dsn: str) -> AsyncIterator[Chancy]:
    engine = db.connect(chancy_dsn)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with db.make_chancy(chancy_dsn) as chancy:
        yield chancy
    await engine.dispose()
