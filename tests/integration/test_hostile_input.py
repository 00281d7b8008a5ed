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
import math
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
from tests.support import tasks

EXAMPLES = 80
# PostgreSQL keeps timestamps to the microsecond.
CLOCK_TOLERANCE = timedelta(milliseconds=1)


# Any code point, lone surrogates and NUL included (st.text leaves surrogates out).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(any_text, json_values, max_size=4)
not_json = st.datetimes() | st.sets(st.integers(), max_size=2) | st.floats().filter(math.isnan)
positive_seconds = st.floats(min_value=1e-6, max_value=10**10) | st.timedeltas(
    min_value=timedelta(microseconds=1), max_value=timedelta(days=10**5)
)
# Each argument's values that chancy accepts, and values it must refuse (or store).
VALID: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True),
    "kwargs": json_objects,
    "meta": st.none() | json_objects,
    "priority": st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "max_attempts": st.integers(min_value=1, max_value=2**31 - 1),
    "unique_key": st.none() | any_text.filter(bool),
    "timeout": st.none() | positive_seconds,
    "backoff": st.none() | positive_seconds,
    "delay": positive_seconds,
    "scheduled_at": st.datetimes(timezones=st.just(UTC)),
}
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "queue": st.text(max_size=70) | st.sampled_from(["", "a" * 65, "with space", "naïve"]),
    "kwargs": st.dictionaries(st.integers(), json_values, min_size=1, max_size=2)
    | st.dictionaries(any_text, not_json, min_size=1, max_size=2),
    "meta": st.dictionaries(any_text, not_json, min_size=1, max_size=2),
    "priority": st.integers(min_value=2**31, max_value=2**40)
    | st.integers(max_value=-(2**31) - 1, min_value=-(2**40))
    | st.floats(),
    "max_attempts": st.integers(min_value=-3, max_value=0) | st.integers(min_value=2**31),
    "unique_key": st.just("") | st.integers(),
    "timeout": st.floats(max_value=0) | st.just(math.inf),
    "backoff": st.floats(max_value=-1e-9) | st.just(math.nan),
    "delay": st.floats(max_value=-1e-9) | st.integers(min_value=10**12, max_value=10**15),
    "scheduled_at": st.datetimes(),  # naive
}


@st.composite
def push_arguments(draw: st.DrawFn) -> dict[str, Any]:
    """The queue and ``Job.from_func`` arguments of one push; in about one push of four,
    one of them is hostile (the others carry hostile data in valid values)."""
    hostile = draw(st.sampled_from(list(HOSTILE))) if draw(st.integers(0, 3)) == 0 else None
    when = draw(st.sampled_from(["now", "delay", "scheduled_at"]))
    names = [name for name in VALID if name not in ("delay", "scheduled_at") or name == when]
    if hostile in ("delay", "scheduled_at"):
        names = [name for name in names if name not in ("delay", "scheduled_at")] + [hostile]
    return {name: draw(HOSTILE[name] if name == hostile else VALID[name]) for name in names}


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
        result = await connection.exec_driver_sql("SELECT count(*) FROM chancy_jobs")
        return int(result.scalar_one())


async def delete_jobs(chancy: Chancy) -> None:
    async with chancy.engine.begin() as connection:
        await connection.exec_driver_sql("DELETE FROM chancy_jobs")


def exactly(value: Any) -> str:
    """``value`` as canonical JSON: equal only if equal in value *and* type (an int
    that came back for a float, or 1 for True, differs)."""
    return json.dumps(value, sort_keys=True, default=dict)


def seconds_of(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


def assert_round_trip(stored: QueuedJob, arguments: Mapping[str, Any]) -> None:
    """Every argument comes back from the database as it was given."""
    assert exactly(dict(stored.kwargs)) == exactly(arguments["kwargs"])
    assert exactly(dict(stored.meta)) == exactly(arguments["meta"] or {})
    assert stored.queue == arguments["queue"]
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


async def push_or_refuse(chancy: Chancy, arguments: Mapping[str, Any]) -> None:
    """Push a job made of ``arguments``: it must come back exactly, or be refused with a
    ChancyError while nothing is stored."""
    await delete_jobs(chancy)
    queue, job_arguments = arguments["queue"], dict(arguments)
    del job_arguments["queue"]
    try:
        reference = await chancy.push(queue, Job.from_func(tasks.anything, **job_arguments))
    except ChancyError:
        assert await count_jobs(chancy) == 0
        return
    stored = await chancy.get_job(reference)
    assert stored is not None
    assert_round_trip(stored, arguments)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(arguments=push_arguments())
def test_every_job_argument_round_trips_or_is_refused_before_anything_is_stored(
    blocking_chancy: tuple[asyncio.Runner, Chancy], arguments: dict[str, Any]
) -> None:
    runner, chancy = blocking_chancy
    runner.run(push_or_refuse(chancy, arguments))


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


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param({"unique_key": "a\x00b"}, id="unique-key"),
        pytest.param({"kwargs": {"a\x00": 1}}, id="kwargs-key"),
        pytest.param({"meta": {"\x00": None}}, id="meta-key"),
    ],
)
async def test_a_nul_character_is_refused_before_anything_is_stored(
    chancy: Chancy, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ChancyError):
        await chancy.push("default", Job.from_func(tasks.anything, **arguments))
    assert await count_jobs(chancy) == 0


@pytest.mark.parametrize(
    "delay",
    [
        pytest.param(10**12, id="past-year-9999"),  # stored, but get_job cannot read it
        pytest.param(1e13, id="past-postgresql-intervals"),
        pytest.param(timedelta(days=999_999_999), id="timedelta-max"),
    ],
)
async def test_a_delay_that_cannot_be_stored_and_read_back_is_refused_before_anything_is_stored(
    chancy: Chancy, delay: float | timedelta
) -> None:
    with pytest.raises(ChancyError):
        await chancy.push("default", Job.from_func(tasks.anything, delay=delay))
    assert await count_jobs(chancy) == 0
