"""The statements that move a job after its claim: outcomes, leases, rescue, promotion,
cancel, retry, and the leader's lease. All fenced by the attempt."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.events import EVENTS_CHANNEL
from chancy.executor import Job, QueuedJob
from chancy.models import JobRow
from chancy.repository import (
    Attempt,
    AttemptRepository,
    ClaimRepository,
    JobRepository,
    LeaderRepository,
    MaintenanceRepository,
    Outcome,
)
from chancy.states import JobState
from tests.support import tasks
from tests.support.servers import asyncpg_dsn

claims = ClaimRepository()
attempts = AttemptRepository()
maintenance = MaintenanceRepository()
jobs = JobRepository()
leaders = LeaderRepository()


def greet() -> Job:
    return Job.from_func(tasks.greet, kwargs={"name": "x"})


async def push_and_claim(
    chancy: Chancy, job: Job | None = None, *, lease_seconds: float = 30.0
) -> QueuedJob:
    await chancy.push("default", job or greet())
    async with chancy.engine.begin() as connection:
        (claimed,) = await claims.claim_available(
            connection, "default", 1, "worker-a", lease_seconds=lease_seconds
        )
    return claimed


async def complete(chancy: Chancy, *outcomes: Outcome) -> set[int]:
    async with chancy.engine.begin() as connection:
        return await attempts.complete_many_if_running(connection, outcomes)


async def stored(chancy: Chancy, job_id: int) -> QueuedJob:
    job = await chancy.get_job(job_id)
    assert job is not None
    return job


async def test_success_stores_the_result_and_finishes(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy)
    written = await complete(
        chancy, Outcome(claimed.id, claimed.fence, JobState.SUCCEEDED, result={"n": [1, 2]})
    )
    assert written == {claimed.id}
    job = await stored(chancy, claimed.id)
    assert job.state is JobState.SUCCEEDED
    assert job.result == {"n": [1, 2]}
    assert job.completed_at is not None
    assert job.lease_expires_at is None


async def test_a_stale_attempt_cannot_overwrite_the_newer_one(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy, greet().with_max_attempts(3), lease_seconds=-1)
    async with chancy.engine.begin() as connection:
        assert await maintenance.rescue_expired_many(connection, 10) == {
            claimed.id: JobState.PENDING
        }
        (again,) = await claims.claim_available(connection, "default", 1, "worker-b")
    assert again.attempts == claimed.attempts + 1
    stale = Outcome(claimed.id, claimed.fence, JobState.SUCCEEDED, result="stale")
    assert await complete(chancy, stale) == set()
    fresh = Outcome(again.id, again.fence, JobState.SUCCEEDED, result="fresh")
    assert await complete(chancy, fresh) == {again.id}
    assert await complete(chancy, stale) == set()
    assert (await stored(chancy, claimed.id)).result == "fresh"


async def test_a_failed_attempt_with_attempts_left_waits_to_retry(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy, greet().with_max_attempts(2))
    error = {"attempt": 1, "type": "ValueError", "message": "boom", "traceback": "tb"}
    outcome = Outcome(claimed.id, claimed.fence, JobState.RETRYING, error=error, retry_in=3600)
    await complete(chancy, outcome)
    job = await stored(chancy, claimed.id)
    assert job.state is JobState.RETRYING
    assert job.completed_at is None
    assert job.scheduled_at - job.started_at > timedelta(minutes=59)  # type: ignore[operator]
    (entry,) = job.errors
    assert {k: entry[k] for k in error} == error
    assert "at" in entry


async def test_promotion_makes_due_jobs_ready_and_leaves_future_ones(chancy: Chancy) -> None:
    future = await chancy.push(greet().with_delay(3600))
    due = await chancy.push(greet().with_delay(0.001))
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(JobRow)
            .where(JobRow.id == due.id)
            .values(scheduled_at=sa.func.now() - sa.text("interval '1 second'"), state="scheduled")
        )
        assert await maintenance.promote_due_many(connection, 100) == 1
    assert (await stored(chancy, due.id)).state is JobState.PENDING
    assert (await stored(chancy, future.id)).state is JobState.SCHEDULED


async def test_lease_extension_reports_jobs_no_longer_held(chancy: Chancy) -> None:
    kept = await push_and_claim(chancy)
    cancelled = await push_and_claim(chancy)
    async with chancy.engine.begin() as connection:
        await jobs.cancel(connection, cancelled.id)
        held = await attempts.extend_leases_many(
            connection,
            [Attempt(kept.id, kept.fence), Attempt(cancelled.id, cancelled.fence)],
            60,
        )
    assert held == {kept.id}
    after = await stored(chancy, kept.id)
    assert after.lease_expires_at > kept.lease_expires_at  # type: ignore[operator]


async def test_release_makes_the_job_ready_at_once_keeping_its_attempts(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy)
    async with chancy.engine.begin() as connection:
        released = await attempts.release_many_if_running(
            connection, [Attempt(claimed.id, claimed.fence)]
        )
        assert released == {claimed.id}
        (again,) = await claims.claim_available(connection, "default", 1, "worker-b")
    assert again.id == claimed.id
    assert again.attempts == 2


async def test_rescue_records_the_lost_attempt(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy, greet().with_max_attempts(2), lease_seconds=-1)
    async with chancy.engine.begin() as connection:
        assert await maintenance.rescue_expired_many(connection, 10) == {
            claimed.id: JobState.PENDING
        }
    (entry,) = (await stored(chancy, claimed.id)).errors
    assert entry["type"] == "LeaseExpired"
    assert entry["attempt"] == 1
    assert "worker-a" in entry["message"]


async def test_rescue_fails_a_job_out_of_attempts(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy, lease_seconds=-1)
    async with chancy.engine.begin() as connection:
        assert await maintenance.rescue_expired_many(connection, 10) == {
            claimed.id: JobState.FAILED
        }
    assert (await stored(chancy, claimed.id)).completed_at is not None


async def test_rescue_leaves_live_leases_alone(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy)
    async with chancy.engine.begin() as connection:
        assert await maintenance.rescue_expired_many(connection, 10) == {}
    assert (await stored(chancy, claimed.id)).state is JobState.RUNNING


async def test_cancel_of_a_finished_job_changes_nothing(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy)
    await complete(chancy, Outcome(claimed.id, claimed.fence, JobState.SUCCEEDED, result=1))
    async with chancy.engine.begin() as connection:
        assert await jobs.cancel(connection, claimed.id) is None
    assert (await stored(chancy, claimed.id)).state is JobState.SUCCEEDED


async def test_retry_brings_a_failed_job_back_with_one_more_attempt(chancy: Chancy) -> None:
    claimed = await push_and_claim(chancy)
    failed = Outcome(claimed.id, claimed.fence, JobState.FAILED, error={"message": "x"})
    await complete(chancy, failed)
    async with chancy.engine.begin() as connection:
        retried = await jobs.retry(connection, claimed.id)
        assert retried is not None
        assert (retried.state, retried.max_attempts, retried.completed_at) == (
            JobState.PENDING,
            2,
            None,
        )
        assert await jobs.retry(connection, claimed.id) is None  # pending: nothing to retry


async def test_finished_jobs_are_announced_once_per_batch(
    chancy: Chancy, database_url: URL
) -> None:
    first, second = await push_and_claim(chancy), await push_and_claim(chancy)
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    received: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(EVENTS_CHANNEL, lambda *args: received.put_nowait(args[3]))
    try:
        await complete(
            chancy,
            Outcome(first.id, first.fence, JobState.SUCCEEDED),
            Outcome(second.id, second.fence, JobState.FAILED, error={"message": "x"}),
        )
        payload = await asyncio.wait_for(received.get(), timeout=5)
    finally:
        await listener.close()
    assert payload == f'{{"event" : "finished", "ids" : [{first.id}, {second.id}]}}'


async def test_one_leader_at_a_time_and_a_new_term_on_takeover(chancy: Chancy) -> None:
    async with chancy.engine.begin() as connection:
        assert await leaders.elect_or_renew(connection, "a", ttl=30) == 1
        assert await leaders.elect_or_renew(connection, "b", ttl=30) is None
        assert await leaders.elect_or_renew(connection, "a", ttl=-1) == 1  # renewed, expired
        assert await leaders.elect_or_renew(connection, "b", ttl=30) == 2
        assert await leaders.elect_or_renew(connection, "a", ttl=30) is None
        await leaders.resign(connection, "b")
        assert await leaders.elect_or_renew(connection, "a", ttl=30) == 3


@pytest.mark.parametrize("state", ["pending", "scheduled", "retrying", "running"])
async def test_cancel_stops_any_unfinished_job(chancy: Chancy, state: str) -> None:
    ref = await chancy.push(greet())
    async with chancy.engine.begin() as connection:
        await connection.execute(sa.update(JobRow).where(JobRow.id == ref.id).values(state=state))
        cancelled = await jobs.cancel(connection, ref.id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED


async def test_a_released_attempt_does_not_use_up_the_jobs_allowed_attempts(
    chancy: Chancy,
) -> None:
    claimed = await push_and_claim(chancy)  # max_attempts 1
    async with chancy.engine.begin() as connection:
        await attempts.release_many_if_running(connection, [Attempt(claimed.id, claimed.fence)])
        (again,) = await claims.claim_available(connection, "default", 1, "worker-b")
    # The attempt given back at a stop never ran to an end: the job may still run once.
    assert (again.attempts, again.max_attempts) == (2, 2)
