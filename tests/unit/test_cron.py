"""Cron schedules: checked when made, ticking in their time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chancy.cron import Cron, job_of, next_tick
from chancy.errors import InvalidJobError
from chancy.executor import Job
from tests.support import tasks

PARIS = ZoneInfo("Europe/Paris")
JOB = Job.from_func(tasks.greet, kwargs={"name": "cron"})


def test_a_bad_expression_fails_when_the_schedule_is_made() -> None:
    with pytest.raises(InvalidJobError, match="'61 \\* \\* \\* \\*' is not valid"):
        Cron("61 * * * *", JOB)


def test_an_unknown_time_zone_fails_when_the_schedule_is_made() -> None:
    with pytest.raises(InvalidJobError, match="unknown time zone 'Europe/Pariss'"):
        Cron("0 * * * *", JOB, timezone="Europe/Pariss")


def test_the_default_name_is_the_function_and_the_expression() -> None:
    assert Cron("*/5 * * * *", JOB).name == "tests.support.tasks.greet */5 * * * *"


def test_ticks_follow_the_time_zone() -> None:
    after = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    assert next_tick("30 2 * * *", "Europe/Paris", after) == datetime(
        2026, 1, 16, 1, 30, tzinfo=UTC
    )


def test_a_time_skipped_by_daylight_saving_runs_at_the_first_time_after_it() -> None:
    # 2026-03-29 in Paris: 02:00 becomes 03:00, so 02:30 does not exist that day.
    tick = next_tick("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert tick.astimezone(PARIS) == datetime(2026, 3, 29, 3, 0, tzinfo=PARIS)
    following = next_tick("30 2 * * *", "Europe/Paris", tick)
    assert following.astimezone(PARIS) == datetime(2026, 3, 30, 2, 30, tzinfo=PARIS)


def test_an_hour_that_happens_twice_ticks_twice() -> None:
    # 2026-10-25 in Paris: 03:00 becomes 02:00 again.
    tick = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)
    ticks = []
    for _ in range(3):
        tick = next_tick("0 * * * *", "Europe/Paris", tick)
        ticks.append(tick)
    assert [t.hour for t in ticks] == [0, 1, 2]  # in UTC: 02:00 CEST, 02:00 CET, 03:00 CET


def test_six_fields_tick_by_the_second() -> None:
    after = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert next_tick("*/5 * * * * *", "UTC", after) == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)


def test_the_job_of_a_tick_is_unique_to_the_schedule_and_the_tick() -> None:
    cron = Cron("0 * * * *", JOB, name="hourly")
    tick = datetime(2026, 1, 1, 5, tzinfo=UTC)
    job = job_of(cron.job_fields(), "hourly", tick)
    assert job.unique_key == "cron:hourly:2026-01-01T05:00:00+00:00"
    assert (job.func, dict(job.kwargs)) == (JOB.func, {"name": "cron"})
