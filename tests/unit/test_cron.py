"""Cron schedules: checked when made, ticking in their time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chancy.app import Chancy
from chancy.cron import Cron, job_of, next_tick
from chancy.errors import ChancyError, InvalidJobError
from chancy.executor import Job
from tests.support import tasks

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
JOB = Job.from_func(tasks.greet, kwargs={"name": "cron"})


def test_a_bad_expression_fails_when_the_schedule_is_made() -> None:
    with pytest.raises(InvalidJobError, match="'61 \\* \\* \\* \\*' is not valid"):
        Cron("61 * * * *", JOB)


def test_an_unknown_time_zone_fails_when_the_schedule_is_made() -> None:
    with pytest.raises(InvalidJobError, match="unknown time zone 'Europe/Pariss'"):
        Cron("0 * * * *", JOB, timezone="Europe/Pariss")


def test_the_default_name_is_the_function_and_the_expression() -> None:
    assert Cron("*/5 * * * *", JOB).name == "tests.support.tasks.greet */5 * * * *"


def test_prune_schedules_takes_a_bool() -> None:
    with pytest.raises(ChancyError, match="prune_schedules= takes True or False, not 'no'"):
        Chancy("postgresql://localhost/db", prune_schedules="no")  # type: ignore[arg-type]


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


# Daylight-saving changes in 2026, as (just before, just after) the changed hour in UTC.
# Fall back: New York on 11-01 (02:00 EDT becomes 01:00 EST), Paris on 10-25 (03:00 CEST
# becomes 02:00 CET). Spring forward: New York on 03-08 (02:00 EST becomes 03:00 EDT),
# Paris on 03-29 (02:00 CET becomes 03:00 CEST).
NEW_YORK_FALL = (datetime(2026, 11, 1, 4, 59, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC))
PARIS_FALL = (datetime(2026, 10, 24, 23, 59, tzinfo=UTC), datetime(2026, 10, 25, 2, tzinfo=UTC))
NEW_YORK_SPRING = (datetime(2026, 3, 8, 6, 59, tzinfo=UTC), datetime(2026, 3, 8, 7, 30, tzinfo=UTC))
PARIS_SPRING = (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
NY, FR = "America/New_York", "Europe/Paris"
MINUTES = ("00", "20", "40")


def ticks_in(expression: str, timezone: str, window: tuple[datetime, datetime]) -> list[str]:
    """The ticks in ``window``, as local times with their UTC offset."""
    found, (tick, end) = [], window
    while (tick := next_tick(expression, timezone, tick)) <= end:
        found.append(tick.astimezone(ZoneInfo(timezone)).strftime("%H:%M%z"))
    return found


@pytest.mark.parametrize(
    ("expression", "timezone", "window", "expected"),
    [
        ("30 1 * * *", NY, NEW_YORK_FALL, ["01:30-0400"]),
        ("0 1,2 * * *", NY, NEW_YORK_FALL, ["01:00-0400", "02:00-0500"]),
        ("30 2 * * *", FR, PARIS_FALL, ["02:30+0200"]),
    ],
)
def test_a_fixed_time_in_the_repeated_hour_ticks_once_at_its_first_pass(
    expression: str, timezone: str, window: tuple[datetime, datetime], expected: list[str]
) -> None:
    assert ticks_in(expression, timezone, window) == expected


@pytest.mark.parametrize(
    ("expression", "timezone", "window", "expected"),
    [
        ("0 * * * *", NY, NEW_YORK_FALL, ["01:00-0400", "01:00-0500", "02:00-0500"]),
        ("*/20 1 * * *", NY, NEW_YORK_FALL, [f"01:{m}-0{h}00" for h in (4, 5) for m in MINUTES]),
        ("*/30 2 * * *", FR, PARIS_FALL, ["02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100"]),
    ],
)
def test_every_n_minutes_or_hours_ticks_in_both_passes_of_the_repeated_hour(
    expression: str, timezone: str, window: tuple[datetime, datetime], expected: list[str]
) -> None:
    assert ticks_in(expression, timezone, window) == expected


@pytest.mark.parametrize(
    ("timezone", "second_pass", "following"),
    [
        (NY, datetime(2026, 11, 1, 6, 10, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)),
        (FR, datetime(2026, 10, 25, 1, 10, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)),
    ],
)
def test_the_tick_after_a_time_in_the_second_pass_is_never_in_the_first(
    timezone: str, second_pass: datetime, following: datetime
) -> None:
    # 01:10 EST / 02:10 CET: the fixed time's one tick of the day (01:30 EDT / 02:30 CEST)
    # is already behind, although the clock reads an earlier time.
    expression = "30 1 * * *" if timezone == NY else "30 2 * * *"
    assert next_tick(expression, timezone, second_pass) == following


@pytest.mark.parametrize(("timezone", "window"), [(NY, NEW_YORK_SPRING), (FR, PARIS_SPRING)])
def test_a_fixed_time_in_the_skipped_hour_ticks_at_the_first_minute_after_it(
    timezone: str, window: tuple[datetime, datetime]
) -> None:
    assert [t[:5] for t in ticks_in("30 2 * * *", timezone, window)] == ["03:00"]


@pytest.mark.parametrize(("timezone", "window"), [(NY, NEW_YORK_SPRING), (FR, PARIS_SPRING)])
def test_every_n_minutes_has_no_ticks_in_the_skipped_hour(
    timezone: str, window: tuple[datetime, datetime]
) -> None:
    assert [t[:5] for t in ticks_in("*/30 * * * *", timezone, window)] == ["03:00", "03:30"]
    # Nothing on that day for an hour that does not exist: the next tick is the next day's.
    assert next_tick("*/20 2 * * *", timezone, window[0]).day == window[0].day + 1
