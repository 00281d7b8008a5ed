"""Each service's ``run_once``, one tick at a time against PostgreSQL: the leader's
promoter, rescuer, pruner and cron, and the worker's heartbeat and queue settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.executor import Job, QueuedJob
from chancy.models import JobRow
from chancy.repository import Attempt, ClaimRepository
from chancy.services import CronService, Leadership, Promoter, Pruner, Rescuer
from chancy.states import JobState
from chancy.worker.heartbeat import Heartbeat
from chancy.worker.queue_settings import QueueSettingsWatcher
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "tick"})


def leadership(chancy: Chancy) -> Leadership:
    return Leadership(chancy.engine, "test")


async def claim(chancy: Chancy, job: Job, *, lease_seconds: float = 30.0) -> QueuedJob:
    """Push ``job`` and claim it as ``worker-a``, its lease ``lease_seconds`` long."""
    await chancy.push("default", job)
    async with chancy.engine.begin() as connection:
        (claimed,) = await ClaimRepository().claim_available(
            connection, "default", 1, "worker-a", lease_seconds=lease_seconds
        )
    return claimed


async def states(chancy: Chancy) -> dict[int, str]:
    async with chancy.engine.connect() as connection:
        rows = await connection.execute(sa.select(JobRow.id, JobRow.state))
        return {int(job_id): str(state) for job_id, state in rows.all()}


async def lease_left(chancy: Chancy, job_id: int) -> float:
    """Seconds until the lease of job ``job_id`` expires, by the database's clock."""
    async with chancy.engine.connect() as connection:
        left = sa.func.extract("epoch", JobRow.lease_expires_at - sa.func.now())
        seconds = await connection.scalar(sa.select(left).where(JobRow.id == job_id))
        assert seconds is not None
        return float(seconds)


async def test_promoter_promotes_every_due_job_and_no_other(chancy: Chancy) -> None:
    refs = await chancy.push_many("default", [JOB.with_delay(3600)] * 4)
    due = [ref.id for ref in refs[:3]]
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(JobRow)
            .where(JobRow.id.in_(due))
            .values(scheduled_at=sa.func.now() - timedelta(seconds=1))
        )
    promoter = Promoter(chancy.engine, leadership(chancy), batch=2)
    assert await promoter.run_once() == 3  # two batches: a full one, then a short one
    assert await promoter.run_once() == 0
    assert await states(chancy) == {
        **dict.fromkeys(due, "pending"),
        refs[3].id: "scheduled",
    }


async def test_rescuer_takes_back_expired_leases_only(chancy: Chancy) -> None:
    retried = await claim(chancy, JOB.with_max_attempts(2), lease_seconds=-1)
    spent = await claim(chancy, JOB, lease_seconds=-1)
    held = await claim(chancy, JOB)
    rescuer = Rescuer(chancy.engine, leadership(chancy), batch=1)
    assert await rescuer.run_once() == 2
    assert await rescuer.run_once() == 0
    assert await states(chancy) == {retried.id: "pending", spent.id: "failed", held.id: "running"}


async def test_pruner_deletes_by_retention_as_of_its_clock(chancy: Chancy) -> None:
    ref = await chancy.push("default", JOB)
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(JobRow)
            .where(JobRow.id == ref.id)
            .values(state=JobState.SUCCEEDED, completed_at=sa.func.now())
        )
    now = datetime.now(UTC)
    clock = [now]
    retention = {JobState.SUCCEEDED: timedelta(days=1)}
    pruner = Pruner(chancy.engine, leadership(chancy), retention=retention, clock=lambda: clock[0])
    assert await pruner.run_once() == 0
    clock[0] = now + timedelta(days=1, minutes=1)
    assert await pruner.run_once() == 1
    assert await states(chancy) == {}


async def test_cron_pushes_a_due_tick_once(chancy: Chancy) -> None:
    start = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    clock = [start]
    cron = CronService(
        chancy.engine,
        leadership(chancy),
        [Cron("* * * * *", JOB, name="minutely")],
        clock=lambda: clock[0],
    )
    await cron.store()
    assert await cron.run_once() == 0  # the first tick is at 00:01
    clock[0] = start + timedelta(minutes=1)
    assert await cron.run_once() == 1
    assert await cron.run_once() == 0  # the same tick, not again


async def test_heartbeat_extends_held_leases_and_stops_lost_runs(chancy: Chancy) -> None:
    running = await claim(chancy, JOB, lease_seconds=5)
    taken = await claim(chancy, JOB, lease_seconds=5)
    unwritten = await claim(chancy, JOB, lease_seconds=5)
    async with chancy.engine.begin() as connection:  # another worker took it over
        await connection.execute(
            sa.update(JobRow)
            .where(JobRow.id == taken.id)
            .values(attempts=JobRow.attempts + 1, fence=JobRow.fence + 1)
        )
    lost: list[int] = []
    heartbeat = Heartbeat(
        chancy.engine,
        lease_seconds=60,
        running=lambda: [Attempt(job.id, job.fence) for job in (running, taken)],
        unwritten=lambda: [Attempt(unwritten.id, unwritten.fence)],
        lost=lost.append,
    )
    assert await heartbeat.run_once() == 2
    assert lost == [taken.id]
    assert await lease_left(chancy, running.id) > 50
    assert await lease_left(chancy, unwritten.id) > 50
    assert await lease_left(chancy, taken.id) < 10


async def test_queue_settings_pick_up_a_pause(chancy: Chancy) -> None:
    await chancy.push("default", JOB)  # declares the queue
    changed: list[str] = []
    watcher = QueueSettingsWatcher(chancy.engine, ["default", "other"], on_change=changed.append)
    await watcher.load()
    assert not watcher.settings["default"].paused
    assert await watcher.run_once() == 0
    await chancy.pause_queue("default")
    assert await watcher.run_once() == 1
    assert changed == ["default"]
    assert watcher.settings["default"].paused
