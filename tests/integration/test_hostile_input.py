"""Hostile job arguments: each either round-trips exactly through the database, or is
refused with a :class:`ChancyError` before anything is stored.

A property-based test draws the arguments of ``Job.from_func`` and ``push`` (kwargs and
meta of arbitrary JSON-ish values: unicode, big ints, floats, nesting; priorities inside
and outside 32 bits; valid and invalid queue names; max_attempts; delays; unique keys);
the tests after it pin the inputs it found wrong, one behaviour each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import URL

from chancy.app import Chancy
from chancy.errors import ChancyError
from chancy.executor import Job, QueuedJob
from tests.unit import tasks

EXAMPLES = 60
# PostgreSQL keeps timestamps to the microsecond.
CLOCK_TOLERANCE = timedelta(milliseconds=1)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
# Mostly JSON, sometimes what is not: a datetime value, a key that is not a str.
hostile_values = json_values | st.datetimes() | st.sets(st.integers(), max_size=2)
hostile_keys = st.text(max_size=10) | st.integers()
objects = st.dictionaries(hostile_keys, hostile_values, max_size=4)
queue_names = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True) | st.text(max_size=70)
priorities = st.integers(min_value=-(2**33), max_value=2**33) | st.sampled_from(
    [-(2**31) - 1, -(2**31), 2**31 - 1, 2**31]
)
seconds = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-5, max_value=10**14)
    | st.timedeltas()
)
moments = st.datetimes(timezones=st.none() | st.just(UTC))


@st.composite
def job_arguments(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for ``Job.from_func``, some of them hostile."""
    arguments: dict[str, Any] = {
        "kwargs": draw(objects),
        "priority": draw(priorities),
        "max_attempts": draw(st.integers(min_value=-3, max_value=2**32)),
        "unique_key": draw(st.none() | st.text(max_size=20)),
        "meta": draw(st.none() | objects),
        "timeout": draw(st.none() | seconds),
        "backoff": draw(st.none() | seconds),
    }
    when = draw(st.sampled_from(["now", "delay", "scheduled_at"]))
    if when == "delay":
        arguments["delay"] = draw(seconds)
    elif when == "scheduled_at":
        arguments["scheduled_at"] = draw(moments)
    return arguments


@pytest.fixture
def blocking_chancy(database_url: URL) -> Iterator[tuple[asyncio.Runner, Chancy]]:
    """A Chancy on an event loop of the test's own, for hypothesis's synchronous
    examples (one loop and one engine for all of them)."""
    with asyncio.Runner() as runner:
        chancy = Chancy(database_url)
        runner.run(chancy.open())
        try:
            yield runner, chancy
        finally:
            runner.run(chancy.close())


async def count_jobs(chancy: Chancy) -> int:
    async with chancy.engine.connect() as connection:
        return int(await connection.exec_driver_sql("SELECT count(*) FROM chancy_jobs").scalar())


async def delete_jobs(chancy: Chancy) -> None:
    async with chancy.engine.begin() as connection:
        await connection.exec_driver_sql("DELETE FROM chancy_jobs")


def exactly(value: Any) -> str:
    """``value`` as canonical JSON: equal only if equal in value *and* type (an int
    that came back for a float, or 1 for True, differs)."""
    return json.dumps(value, sort_keys=True, default=dict)


def seconds_of(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def assert_round_trip(stored: QueuedJob, queue: str, arguments: Mapping[str, Any]) -> None:
    """Every argument comes back from the database as it was given."""
    assert exactly(dict(stored.kwargs)) == exactly(arguments["kwargs"])
    assert exactly(dict(stored.meta)) == exactly(arguments["meta"] or {})
    assert stored.queue == queue
    assert stored.priority == arguments["priority"]
    assert stored.max_attempts == arguments["max_attempts"]
    assert stored.unique_key == arguments["unique_key"]
    assert stored.timeout == seconds_of(arguments["timeout"])
    assert stored.backoff == seconds_of(arguments["backoff"])
    assert stored.scheduled_at is not None
    if "scheduled_at" in arguments:
        assert stored.scheduled_at == arguments["scheduled_at"]
    else:
        delay = timedelta(seconds=seconds_of(arguments.get("delay")) or 0.0)
        assert (
            abs(stored.scheduled_at - (stored.created_at + delay))
            <= CLOCK_TOLERANCE + delay / 10**9
        )


async def push_or_refuse(chancy: Chancy, queue: str, arguments: Mapping[str, Any]) -> None:
    """Push a job made of ``arguments``: it must come back exactly, or be refused with a
    ChancyError while nothing is stored."""
    await delete_jobs(chancy)
    try:
        reference = await chancy.push(queue, Job.from_func(tasks.anything, **arguments))
    except ChancyError:
        assert await count_jobs(chancy) == 0
        return
    stored = await chancy.get_job(reference)
    assert stored is not None
    assert_round_trip(stored, queue, arguments)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(queue=queue_names, arguments=job_arguments())
def test_every_job_argument_round_trips_or_is_refused_before_anything_is_stored(
    blocking_chancy: tuple[asyncio.Runner, Chancy], queue: str, arguments: dict[str, Any]
) -> None:
    runner, chancy = blocking_chancy
    runner.run(push_or_refuse(chancy, queue, arguments))


@pytest.mark.parametrize("value", [1e16, 2.5e20, 1e308, -1.7976931348623157e308])
async def test_a_large_float_in_kwargs_comes_back_as_the_same_float(
    chancy: Chancy, value: float
) -> None:
    reference = await chancy.push("default", Job.from_func(tasks.anything, kwargs={"x": value}))
    stored = await chancy.get_job(reference)
    assert stored is not None
    assert exactly(dict(stored.kwargs)) == exactly({"x": value})


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"kwargs": {"x": "\ud800"}}, id="kwargs-value"),
        pytest.param({"kwargs": {"\udfff": 1}}, id="kwargs-key"),
        pytest.param({"meta": {"x": "a\ud83d"}}, id="meta-value"),
        pytest.param({"unique_key": "\ud800"}, id="unique-key"),
    ],
)
async def test_a_lone_surrogate_is_refused_before_anything_is_stored(
    chancy: Chancy, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ChancyError):
        await chancy.push("default", Job.from_func(tasks.anything, **arguments))
    assert await count_jobs(chancy) == 0


async def test_a_unique_key_with_a_nul_is_refused_before_anything_is_stored(
    chancy: Chancy,
) -> None:
    with pytest.raises(ChancyError):
        await chancy.push("default", Job.from_func(tasks.anything, unique_key="a\x00b"))
    assert await count_jobs(chancy) == 0


@pytest.mark.parametrize("delay", [1e13, timedelta(days=999_999_999), 10**14])
async def test_a_delay_past_the_end_of_the_calendar_is_refused_before_anything_is_stored(
    chancy: Chancy, delay: float | timedelta
) -> None:
    with pytest.raises(ChancyError):
        await chancy.push("default", Job.from_func(tasks.anything, delay=delay))
    assert await count_jobs(chancy) == 0
