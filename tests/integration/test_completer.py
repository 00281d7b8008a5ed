"""The completer: outcomes written in batches, and a bound on what waits in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chancy.app import Chancy
from chancy.executor import Job, QueuedJob
from chancy.repository import Attempt, AttemptRepository, ClaimRepository, Outcome
from chancy.repository.runner import HotExecutable
from chancy.states import JobState
from chancy.worker.completer import Completer
from tests.support import tasks


async def test_a_waiter_on_the_backlog_returns_once_a_flush_wrote_it(chancy: Chancy) -> None:
    completer = Completer(chancy.engine)
    for job_id in range(1, 11):  # outcomes of no job: written as stale, and so gone
        completer.add(Outcome(job_id, 1, JobState.SUCCEEDED))
    waiter = asyncio.create_task(completer.wait_for_backlog_below(5))
    await asyncio.sleep(0.05)
    assert not waiter.done()  # nothing was written yet: ten wait
    await completer.flush()
    await asyncio.wait_for(waiter, timeout=5)
    assert completer.backlog == 0
    assert completer.stale_rejected == 10


async def claimed(chancy: Chancy, count: int) -> list[QueuedJob]:
    """``count`` jobs pushed and claimed, as a worker holds them."""
    job = Job.from_func(tasks.record, kwargs={"label": "x"})
    await chancy.push_many("default", [job] * count)
    async with chancy.engine.begin() as connection:
        return await ClaimRepository().claim_available(connection, "default", count, "test")


class GatedWrites(AttemptRepository):
    """Writes of outcomes that wait for ``gate`` once committed: a flush held up after
    its statement wrote the outcomes, before it could know."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def complete_many_if_running(
        self, conn: HotExecutable, outcomes: Sequence[Outcome]
    ) -> set[int]:
        written = await super().complete_many_if_running(conn, outcomes)
        self.entered.set()
        await self.gate.wait()
        return written


async def test_stopping_during_a_flush_writes_each_outcome_once(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    done, given_back = await claimed(chancy, 2)
    completer = Completer(chancy.engine)
    completer._attempts = gated = GatedWrites()
    completer.start()
    completer.add(Outcome(done.id, done.fence, JobState.SUCCEEDED, result="ok"))
    completer.release(Attempt(given_back.id, given_back.fence))
    await asyncio.wait_for(gated.entered.wait(), timeout=10)
    stopping = asyncio.create_task(completer.stop())
    await asyncio.sleep(0.05)  # stop() has begun while the flush is held up
    gated.gate.set()
    await asyncio.wait_for(stopping, timeout=10)
    assert completer.stale_rejected == 0
    assert "not written" not in caplog.text
    stored = await chancy.get_job(done.id)
    assert stored is not None
    assert (stored.state, stored.result) == (JobState.SUCCEEDED, "ok")
    back = await chancy.get_job(given_back.id)
    assert back is not None
    assert back.state is JobState.PENDING


async def test_an_outcome_the_database_refuses_fails_its_job_and_holds_back_no_other(
    chancy: Chancy,
) -> None:
    jobs = await claimed(chancy, 4)
    completer = Completer(chancy.engine)
    poison = Outcome(jobs[1].id, jobs[1].fence, JobState.SUCCEEDED, result="a\x00b")
    completer.add(Outcome(jobs[0].id, jobs[0].fence, JobState.SUCCEEDED, result=0))
    completer.add(poison)
    for job in jobs[2:]:
        completer.add(Outcome(job.id, job.fence, JobState.SUCCEEDED, result=job.id))
    await completer.flush()
    assert completer.backlog == 0
    stored = [await chancy.get_job(job.id) for job in jobs]
    assert [s.state for s in stored if s is not None] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
    ]
    failed = stored[1]
    assert failed is not None
    assert failed.errors[-1]["type"] == "OutcomeNotStorable"
    assert "could not be stored" in failed.errors[-1]["message"]
