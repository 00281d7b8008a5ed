"""The cron service: exactly one job per tick, however many schedulers run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.executor import Job
from chancy.models import JobRow
from chancy.services.cron import CronService
from chancy.services.leader import Leadership
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "cron"})
START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduler(chancy: Chancy, clock: Clock, *schedules: Cron) -> CronService:
    leadership = Leadership(chancy.engine, "test")
    return CronService(chancy.engine, leadership, schedules, clock=clock)


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
