"""The cron service: exactly one job per tick, however many schedulers run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.executor import Job
from chancy.models import JobRow, ScheduleRow
from chancy.queue import Queue
from chancy.services.cron import CronService
from chancy.services.leader import Leadership
from chancy.worker import Worker
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "cron"})
START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduler(chancy: Chancy, clock: Clock, *schedules: Cron, prune: bool = True) -> CronService:
    leadership = Leadership(chancy.engine, "test")
    return CronService(chancy.engine, leadership, schedules, clock=clock, prune=prune)


async def stored(chancy: Chancy) -> list[str]:
    async with chancy.engine.connect() as connection:
        statement = sa.select(ScheduleRow.name).order_by(ScheduleRow.name)
        return list((await connection.scalars(statement)).all())


async def next_run_at(chancy: Chancy, name: str) -> datetime:
    async with chancy.engine.connect() as connection:
        statement = sa.select(ScheduleRow.next_run_at).where(ScheduleRow.name == name)
        return (await connection.scalars(statement)).one()


async def change_stored(chancy: Chancy, name: str, **values: Any) -> None:
    """Write a schedule's row as another version of chancy (or a person) might have."""
    async with chancy.engine.begin() as connection:
        await connection.execute(
            sa.update(ScheduleRow).where(ScheduleRow.name == name).values(**values)
        )


async def cron_keys(chancy: Chancy) -> list[str]:
    async with chancy.engine.connect() as connection:
        statement = sa.select(JobRow.unique_key).where(JobRow.unique_key.like("cron:%"))
        return sorted((await connection.scalars(statement)).all())  # type: ignore[arg-type]


async def test_three_schedulers_push_each_of_five_ticks_once(chancy: Chancy) -> None:
    clock = Clock(START)
    every_minute = Cron("* * * * *", JOB, name="minutely")
    schedulers = [scheduler(chancy, clock, every_minute) for _ in range(3)]
    for each in schedulers:
        await each.store()
    for minute in range(1, 6):
        clock.now = START + timedelta(minutes=minute)
        await asyncio.gather(*(each.run_once() for each in schedulers))
    keys = await cron_keys(chancy)
    assert keys == [f"cron:minutely:2026-01-01T00:0{m}:00+00:00" for m in range(1, 6)]


async def test_storing_again_keeps_the_next_tick(chancy: Chancy) -> None:
    clock = Clock(START)
    cron = Cron("0 * * * *", JOB, name="hourly")
    await scheduler(chancy, clock, cron).store()
    clock.now = START + timedelta(minutes=45)  # a restart, before the tick
    await scheduler(chancy, clock, cron).store()
    clock.now = START + timedelta(hours=1)
    assert await scheduler(chancy, clock, cron).run_once() == 1


async def test_missed_ticks_are_skipped_by_default(chancy: Chancy) -> None:
    clock = Clock(START)
    cron = Cron("* * * * *", JOB, name="skipper")
    await scheduler(chancy, clock, cron).store()
    clock.now = START + timedelta(hours=2)  # the cluster was down for two hours
    assert await scheduler(chancy, clock, cron).run_once() == 0
    clock.now += timedelta(minutes=1)
    assert await scheduler(chancy, clock, cron).run_once() == 1


async def test_missed_ticks_are_caught_up_once_when_asked(chancy: Chancy) -> None:
    clock = Clock(START)
    cron = Cron("* * * * *", JOB, name="catcher", catch_up=True)
    await scheduler(chancy, clock, cron).store()
    clock.now = START + timedelta(hours=2)
    assert await scheduler(chancy, clock, cron).run_once() == 1
    assert await scheduler(chancy, clock, cron).run_once() == 0  # not once per missed tick
    assert await cron_keys(chancy) == ["cron:catcher:2026-01-01T00:01:00+00:00"]


# Schedules the app no longer declares.


async def test_a_changed_expression_replaces_the_schedule_of_the_old_one(chancy: Chancy) -> None:
    clock = Clock(START)
    await scheduler(chancy, clock, Cron("*/2 * * * *", JOB)).store()
    await scheduler(chancy, clock, Cron("*/3 * * * *", JOB)).store()  # the next release
    assert await stored(chancy) == ["tests.support.tasks.greet */3 * * * *"]
    clock.now = START + timedelta(minutes=2)
    assert await scheduler(chancy, clock).run_once() == 0  # */2 ticks no more


async def test_removing_a_schedule_logs_its_name(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy.cron")
    clock = Clock(START)
    await scheduler(chancy, clock, Cron("0 * * * *", JOB, name="hourly")).store()
    await scheduler(chancy, clock, Cron("0 0 * * *", JOB, name="daily")).store()
    removed = [r.getMessage() for r in caplog.records if "'hourly'" in r.getMessage()]
    assert len(removed) == 1
    assert "removed" in removed[0]


async def test_a_worker_without_schedules_removes_the_stored_ones(database_url: URL) -> None:
    queues = [Queue(name="default", polling_interval=0.2)]
    hourly = Cron("0 * * * *", JOB, name="hourly")
    async with Chancy(database_url, queues=queues, schedules=[hourly]) as old, Worker(old):
        assert await stored(old) == ["hourly"]
    async with Chancy(database_url, queues=queues) as new, Worker(new):
        assert await stored(new) == []


async def test_prune_schedules_false_keeps_the_schedules_of_other_deployments(
    database_url: URL,
) -> None:
    queues = [Queue(name="default", polling_interval=0.2)]
    hourly = Cron("0 * * * *", JOB, name="hourly")
    daily = Cron("0 0 * * *", JOB, name="daily")
    async with Chancy(database_url, queues=queues, schedules=[hourly]) as billing, Worker(billing):
        pass  # the other deployment stored its schedule
    split = Chancy(database_url, queues=queues, schedules=[daily], prune_schedules=False)
    async with split, Worker(split):
        assert await stored(split) == ["daily", "hourly"]


# One broken schedule among others.


async def test_a_schedule_whose_queue_is_not_declared_does_not_stop_the_others(
    chancy: Chancy,
) -> None:
    clock = Clock(START)
    lost = Cron("* * * * *", JOB.with_queue("nowhere"), name="lost")
    fine = Cron("* * * * *", JOB, name="fine")
    await scheduler(chancy, clock, lost, fine).store()
    for minute in (1, 2):
        clock.now = START + timedelta(minutes=minute)
        assert await scheduler(chancy, clock).run_once() == 1
    assert await cron_keys(chancy) == [
        "cron:fine:2026-01-01T00:01:00+00:00",
        "cron:fine:2026-01-01T00:02:00+00:00",
    ]


async def test_a_tick_that_cannot_be_pushed_is_skipped(chancy: Chancy) -> None:
    clock = Clock(START)
    lost = Cron("* * * * *", JOB.with_queue("nowhere"), name="lost")
    cron = scheduler(chancy, clock, lost)
    await cron.store()
    clock.now = START + timedelta(minutes=1)
    await cron.run_once()
    assert await next_run_at(chancy, "lost") == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)


async def test_a_broken_schedule_is_logged_once_not_at_every_tick(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy.cron")
    clock = Clock(START)
    cron = scheduler(chancy, clock, Cron("* * * * *", JOB.with_queue("nowhere"), name="lost"))
    await cron.store()
    for minute in range(1, 6):
        clock.now = START + timedelta(minutes=minute)
        await cron.run_once()
    logged = [r for r in caplog.records if "'lost'" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].levelno == logging.WARNING
    assert "'nowhere' is not declared" in logged[0].getMessage()


async def test_a_stored_job_this_version_cannot_read_does_not_stop_the_others(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy.cron")
    clock = Clock(START)
    odd, fine = Cron("* * * * *", JOB, name="odd"), Cron("* * * * *", JOB, name="fine")
    await scheduler(chancy, clock, odd, fine).store()
    await change_stored(chancy, "odd", job={**odd.job_fields(), "from_the_future": 1})
    clock.now = START + timedelta(minutes=1)
    assert await scheduler(chancy, clock).run_once() == 1
    assert await next_run_at(chancy, "odd") == datetime(2026, 1, 1, 0, 2, tzinfo=UTC)
    assert any("'odd'" in r.getMessage() for r in caplog.records)


async def test_a_stored_expression_this_version_cannot_read_is_logged_once(
    chancy: Chancy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chancy.cron")
    clock = Clock(START)
    odd, fine = Cron("* * * * *", JOB, name="odd"), Cron("* * * * *", JOB, name="fine")
    cron = scheduler(chancy, clock, odd, fine)
    await cron.store()
    await change_stored(chancy, "odd", cron="* * * * * * * *")
    for minute in (1, 2, 3):
        clock.now = START + timedelta(minutes=minute)
        assert await cron.run_once() == 1  # fine's tick
    assert len([r for r in caplog.records if "'odd'" in r.getMessage()]) == 1


async def test_an_unreadable_schedule_is_passed_over_until_a_worker_stores_it_again(
    chancy: Chancy,
) -> None:
    clock = Clock(START)
    odd = Cron("* * * * *", JOB, name="odd")
    cron = scheduler(chancy, clock, odd)
    await cron.store()
    async with chancy.engine.connect() as connection:
        version = (await connection.scalars(sa.select(ScheduleRow.updated_at))).one()
    await change_stored(chancy, "odd", cron="* * * * * * * *")
    clock.now = START + timedelta(minutes=1)
    assert await cron.run_once() == 0
    await change_stored(chancy, "odd", cron="* * * * *", updated_at=version)  # unseen
    assert await cron.run_once() == 0  # not tried again at every interval
    await scheduler(chancy, clock, odd).store()  # a worker starts
    assert await cron.run_once() == 1


# Daylight saving: 2026-11-01 in New York, 02:00 EDT becomes 01:00 EST.


async def test_a_worker_started_in_the_repeated_hour_does_not_push_its_first_pass_again(
    chancy: Chancy,
) -> None:
    second_pass = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST; 01:30 EDT has run
    clock = Clock(second_pass)
    nightly = Cron("30 1 * * *", JOB, name="nightly", timezone="America/New_York", catch_up=True)
    cron = scheduler(chancy, clock, nightly)
    await cron.store()
    assert await cron.run_once() == 0
    assert await next_run_at(chancy, "nightly") == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
