"""The worker's held connection: claims and outcomes on one connection kept between
statements; one the server ended is replaced, and no outcome is lost with it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.executor import Job
from chancy.repository import ClaimRepository, Outcome
from chancy.repository.runner import HotExecutable
from chancy.states import JobState
from chancy.worker.completer import Completer
from chancy.worker.held_connection import HeldConnection
from tests.integration.test_terminated_connections import end_every_other_session
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "x"})


async def backend_pid(connection: HotExecutable) -> int:
    assert isinstance(connection, asyncpg.Connection)
    pid: int = await connection.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_statements_share_one_connection_until_it_is_closed(chancy: Chancy) -> None:
    held = HeldConnection(chancy.engine)
    first, second = await held.run(backend_pid), await held.run(backend_pid)
    assert first == second
    await held.close()
    with pytest.raises(RuntimeError, match="closed"):
        await held.run(backend_pid)


async def test_a_held_connection_the_server_ended_is_replaced(
    chancy: Chancy, database_url: URL
) -> None:
    held = HeldConnection(chancy.engine)
    before = await held.run(backend_pid)
    assert await end_every_other_session(database_url) >= 1
    assert await held.run(backend_pid) != before
    await held.close()


async def test_an_outcome_written_after_the_server_ended_the_connection_is_not_lost(
    chancy: Chancy, database_url: URL
) -> None:
    await chancy.push("default", JOB)
    held = HeldConnection(chancy.engine)
    (job,) = await held.run(
        lambda connection: ClaimRepository().claim_available(connection, "default", 1, "w")
    )
    completer = Completer(chancy.engine, connection=held)
    assert await end_every_other_session(database_url) >= 1
    completer.add(Outcome(job.id, job.fence, JobState.SUCCEEDED, result="done"))
    await completer.stop()
    stored = await chancy.get_job(job.reference)
    assert stored is not None
    assert (stored.state, stored.result) == (JobState.SUCCEEDED, "done")
    assert completer.backlog == 0
    await held.close()
