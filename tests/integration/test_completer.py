"""The completer: outcomes written in batches, and a bound on what waits in memory."""

from __future__ import annotations

import asyncio

from chancy.app import Chancy
from chancy.repository import Outcome
from chancy.states import JobState
from chancy.worker.completer import Completer


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
