""":func:`chancy.database.engine.retry_once` on a real server: a connection that dies under
its statement (here, the statement ends its own session) is replaced for a read, which is
safe to repeat, and never for an action that is not. (Connections the server ended while
they sat in the pool: tests/integration/test_terminated_connections.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chancy.database.engine import create_engine, retry_once


@pytest.fixture
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


class EndsItsFirstSession:
    """An action whose first run ends its own session mid-statement; later runs read 1."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, connection: AsyncConnection) -> int:
        self.runs += 1
        if self.runs == 1:
            await connection.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return int(await connection.scalar(sa.text("SELECT 1")) or 0)


async def test_a_read_runs_again_after_its_connection_died_under_it(
    engine: AsyncEngine,
) -> None:
    action = EndsItsFirstSession()
    assert await retry_once(engine.connect, action, repeatable=True) == 1
    assert action.runs == 2


async def test_an_action_not_safe_to_repeat_is_not_run_again_once_sent(
    engine: AsyncEngine,
) -> None:
    action = EndsItsFirstSession()
    with pytest.raises(DBAPIError) as raised:
        await retry_once(engine.connect, action)
    assert raised.value.connection_invalidated
    assert action.runs == 1
