"""Hostile arguments to the job context's vocabulary: Snooze, Cancel, progress, max_snoozes
and complete_in's connection types (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import Cancel, Job, Snooze
from chancy.context import JobContext, Rehearsal, checked_progress
from chancy.control import CANCEL_REASON_MAX
from chancy.errors import InvalidJobError
from chancy.jobs import QueuedJob
from chancy.states import JobState


@pytest.mark.parametrize(
    "seconds",
    [float("nan"), float("inf"), -float("inf"), -1, -0.001, 1e308, 366 * 24 * 3600 + 1],
)
def test_snooze_refuses_out_of_range_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"Snooze\(.*\) cannot work"):
        Snooze(seconds)


@pytest.mark.parametrize("seconds", [True, False, "5", None, timedelta(days=1), Decimal(5), [1]])
def test_snooze_refuses_what_is_not_a_number_of_seconds(seconds: Any) -> None:
    with pytest.raises(TypeError, match="Snooze\\(seconds\\) takes a number of seconds"):
        Snooze(seconds)


def test_snooze_of_a_huge_int_raises_the_range_error() -> None:
    with pytest.raises(ValueError, match="cannot work"):
        Snooze(10**400)


def test_progress_of_a_huge_int_raises_the_range_error() -> None:
    with pytest.raises(ValueError, match="not a fraction"):
        checked_progress(10**400, None)


@pytest.mark.parametrize("fraction", [float("nan"), float("inf"), -0.1, 1.1, -1e-300])
def test_progress_refuses_out_of_range_fractions(fraction: float) -> None:
    with pytest.raises(ValueError, match="not a fraction"):
        checked_progress(fraction, None)


@pytest.mark.parametrize("fraction", [True, "0.5", None, Decimal("0.5")])
def test_progress_refuses_what_is_not_a_number(fraction: Any) -> None:
    with pytest.raises(TypeError, match="progress takes a fraction"):
        checked_progress(fraction, None)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("a\x00b", "NUL"),
        ("bad \udcff", "lone surrogate"),
        ("x" * 10_000_000, "at most 1000"),
        (b"bytes", "must be a str"),
    ],
)
def test_progress_refuses_hostile_messages(message: Any, problem: str) -> None:
    with pytest.raises((ValueError, TypeError), match=problem):
        checked_progress(0.5, message)


def test_cancel_cuts_a_huge_reason_and_refuses_a_non_str() -> None:
    assert len(Cancel("x" * 10_000_000).reason) == CANCEL_REASON_MAX
    for reason in (None, 42, b"bytes", ["list"]):
        with pytest.raises(TypeError, match="Cancel\\(reason\\) takes a str"):
            Cancel(reason)  # type: ignore[arg-type]


@pytest.mark.parametrize("bound", [-1, 2**31, True, 2.0, "5", None])
def test_max_snoozes_refuses_bad_bounds(bound: Any) -> None:
    with pytest.raises(InvalidJobError, match="max_snoozes"):
        Job(func="tests.support.context_tasks.snooze_for").with_max_snoozes(bound)


def test_max_snoozes_takes_the_int32_extremes() -> None:
    job = Job(func="tests.support.context_tasks.snooze_for")
    assert job.with_max_snoozes(0).max_snoozes == 0
    assert job.with_max_snoozes(2**31 - 1).max_snoozes == 2**31 - 1


def _ctx() -> JobContext:
    job = QueuedJob(
        func="tests.support.context_tasks.snooze_for",
        id=1,
        state=JobState.RUNNING,
        created_at=datetime.now(UTC),
    )
    return JobContext(job, Rehearsal())


async def test_complete_in_refuses_a_sync_session_naming_the_sync_method() -> None:
    engine = sa.create_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with Session(engine) as session, pytest.raises(TypeError, match="complete_in_sync") as raised:
        await _ctx().complete_in(session)  # type: ignore[arg-type]
    assert "secret" not in str(raised.value)


async def test_complete_in_sync_refuses_an_async_session_naming_the_async_method() -> None:
    engine = create_async_engine("postgresql+asyncpg://nobody:secret@127.0.0.1:1/none")
    async with AsyncSession(engine) as session:
        with pytest.raises(TypeError, match="await complete_in") as raised:
            _ctx().complete_in_sync(session)  # type: ignore[arg-type]
    assert "secret" not in str(raised.value)
    await engine.dispose()


@pytest.mark.parametrize("given", [None, "postgresql://u:secret@h/db", object()])
async def test_complete_in_refuses_what_is_not_a_session(given: Any) -> None:
    with pytest.raises(TypeError, match="takes an AsyncSession or AsyncConnection") as raised:
        await _ctx().complete_in(given)
    assert "secret" not in str(raised.value)
