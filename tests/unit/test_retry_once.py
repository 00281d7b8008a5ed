"""The one retry of :func:`chancy.database.engine.retry_once`, decided on the error alone:
no database here (tests/integration/test_retry_once.py runs it on a real server)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from chancy.database.engine import retry_once

RETRY_LOGGED = "a pooled connection had been closed by the server; using another"


def dead_before_sending() -> DBAPIError:
    """The error of a statement on a connection the server had ended in the pool."""
    orig = asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed")
    return DBAPIError("SELECT 1", None, orig)


class Connections:
    """Numbered stand-ins for pooled connections; ``failures`` are raised by the first
    actions, one each."""

    def __init__(self, *failures: Exception) -> None:
        self.lent: list[int] = []
        self._failures = list(failures)

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[int]:
        self.lent.append(len(self.lent) + 1)
        yield self.lent[-1]

    async def action(self, connection: int) -> int:
        if self._failures:
            raise self._failures.pop(0)
        return connection


@pytest.mark.parametrize("repeatable", [False, True])
async def test_an_action_whose_connection_was_dead_before_sending_runs_again(
    repeatable: bool,
) -> None:
    connections = Connections(dead_before_sending())
    result = await retry_once(connections.connect, connections.action, repeatable=repeatable)
    assert result == 2
    assert connections.lent == [1, 2]


async def test_running_an_action_not_safe_to_repeat_again_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chancy")
    connections = Connections(dead_before_sending())
    await retry_once(connections.connect, connections.action)
    assert [record.getMessage() for record in caplog.records] == [RETRY_LOGGED]


async def test_a_second_failure_is_raised() -> None:
    connections = Connections(dead_before_sending(), dead_before_sending())
    with pytest.raises(DBAPIError):
        await retry_once(connections.connect, connections.action, repeatable=True)
    assert connections.lent == [1, 2]


async def test_another_error_is_raised_at_once() -> None:
    refused = DBAPIError("SELECT 1", None, asyncpg.UniqueViolationError("duplicate key"))
    connections = Connections(refused)
    with pytest.raises(DBAPIError):
        await retry_once(connections.connect, connections.action, repeatable=True)
    assert connections.lent == [1]
