"""Jobs that use their JobContext, and the app a worker process imports to run them.

Each job that writes to the application's table ``charges`` does it in the same
transaction as its ``complete_in``, so a test can tell whether that transaction
committed (one row) or rolled back (none); it is given the database's DSN (a child of
the processes executor does not see the test's environment). ``CONTEXT_DSN`` names the
database of :data:`chancy`, ``CONTEXT_EXECUTOR`` the executor of its queue ``default``
(run as ``chancy worker --app tests.support.context_tasks:chancy``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from chancy import Cancel, JobContext, JobNotRunningError, Snooze
from chancy.app import Chancy
from chancy.queue import Queue

CREATE_CHARGES = """
CREATE TABLE IF NOT EXISTS charges (
    job_id bigint NOT NULL,
    attempt int NOT NULL,
    note text NOT NULL DEFAULT 'charged'
)
"""
_INSERT = sa.text("INSERT INTO charges (job_id, attempt, note) VALUES (:job_id, :attempt, :note)")

chancy = Chancy(
    os.environ.get("CONTEXT_DSN"),
    queues=[
        Queue(
            name="default",
            concurrency=2,
            executor=os.environ.get("CONTEXT_EXECUTOR", "asyncio"),  # type: ignore[arg-type]
            polling_interval=0.1,
        )
    ],
)


def _dsn(dsn: str, driver: str) -> str:
    return dsn.replace("postgresql+asyncpg://", f"postgresql+{driver}://")


_async_engines: dict[tuple[int, str], AsyncEngine] = {}
_sync_engines: dict[str, sa.Engine] = {}


def _async_engine(dsn: str) -> AsyncEngine:
    """One engine per event loop (the threads and processes executors run a coroutine
    job on a loop of its own) and database (each test has its own)."""
    key = (id(asyncio.get_running_loop()), _dsn(dsn, "asyncpg"))
    if key not in _async_engines:
        _async_engines[key] = create_async_engine(key[1], poolclass=sa.NullPool)
    return _async_engines[key]


def _engine(dsn: str) -> sa.Engine:
    dsn = _dsn(dsn, "psycopg")
    if dsn not in _sync_engines:
        _sync_engines[dsn] = sa.create_engine(dsn, poolclass=sa.NullPool)
    return _sync_engines[dsn]


def _row(ctx: JobContext, note: str = "charged") -> dict[str, Any]:
    return {"job_id": ctx.job.id, "attempt": ctx.job.attempts, "note": note}


async def charge_then_hang(dsn: str, *, ctx: JobContext) -> None:
    """Charge and complete in one transaction, then never return: the worker can only
    be killed before it reports anything."""
    async with AsyncSession(_async_engine(dsn)) as session, session.begin():
        await session.execute(_INSERT, _row(ctx))
        await ctx.complete_in(session, result="charged")
    await asyncio.sleep(3600)


def charge_then_hang_sync(dsn: str, *, ctx: JobContext) -> None:
    """:func:`charge_then_hang` for sync functions."""
    with Session(_engine(dsn)) as session, session.begin():
        session.execute(_INSERT, _row(ctx))
        ctx.complete_in_sync(session, result="charged")
    time.sleep(3600)


async def charge_then_fail_first(dsn: str, *, ctx: JobContext) -> str:
    """The first attempt charges and completes, then fails inside the transaction (which
    rolls back); the second returns without charging."""
    if ctx.job.attempts > 1:
        return "second"
    async with AsyncSession(_async_engine(dsn)) as session, session.begin():
        await session.execute(_INSERT, _row(ctx))
        await ctx.complete_in(session, result="charged")
        raise RuntimeError("the card was declined after all")


def charge_then_fail_first_sync(dsn: str, *, ctx: JobContext) -> str:
    """:func:`charge_then_fail_first` for sync functions."""
    if ctx.job.attempts > 1:
        return "second"
    with _engine(dsn).connect() as connection, connection.begin():
        connection.execute(_INSERT, _row(ctx))
        ctx.complete_in_sync(connection, result="charged")
        raise RuntimeError("the card was declined after all")


async def charge_after_takeover(dsn: str, *, ctx: JobContext) -> None:
    """Another attempt takes the job over (its fence changes) before this one completes:
    complete_in refuses, the charge rolls back, and the refusal is recorded."""
    async with _async_engine(dsn).begin() as connection:
        await connection.execute(
            sa.text("UPDATE chancy_jobs SET fence = fence + 1 WHERE id = :id"), {"id": ctx.job.id}
        )
    try:
        async with AsyncSession(_async_engine(dsn)) as session, session.begin():
            await session.execute(_INSERT, _row(ctx))
            await ctx.complete_in(session)
    except JobNotRunningError:
        async with _async_engine(dsn).begin() as connection:
            await connection.execute(_INSERT, _row(ctx, "refused"))
        raise


def charge_after_takeover_sync(dsn: str, *, ctx: JobContext) -> None:
    """:func:`charge_after_takeover` for sync functions."""
    with _engine(dsn).begin() as connection:
        connection.execute(
            sa.text("UPDATE chancy_jobs SET fence = fence + 1 WHERE id = :id"), {"id": ctx.job.id}
        )
    try:
        with Session(_engine(dsn)) as session, session.begin():
            session.execute(_INSERT, _row(ctx))
            ctx.complete_in_sync(session)
    except JobNotRunningError:
        with _engine(dsn).begin() as connection:
            connection.execute(_INSERT, _row(ctx, "refused"))
        raise


def snooze_until(times: int, *, ctx: JobContext) -> int:
    """Snooze until the job has snoozed ``times`` times; returns its attempt number."""
    if ctx.job.snoozes < times:
        raise Snooze(0)
    return ctx.job.attempts


def snooze_for(seconds: Any) -> None:
    """Snooze for ``seconds`` ("nan", "inf" and "-inf" stand for those floats: JSON has
    none of them)."""
    if seconds in ("nan", "inf", "-inf"):
        seconds = float(seconds)
    raise Snooze(seconds)


def cancel_with(reason: Any) -> None:
    raise Cancel(reason)


def report_progress(steps: int, *, ctx: JobContext) -> str:
    """Report ``steps`` progress values as fast as it can; the last is 1.0."""
    for step in range(1, steps + 1):
        ctx.progress_sync(step / steps, f"rows {step}/{steps}")
    return "done"


async def report_progress_async(steps: int, *, ctx: JobContext) -> str:
    """:func:`report_progress` for coroutines."""
    for step in range(1, steps + 1):
        await ctx.progress(step / steps, f"rows {step}/{steps}")
    return "done"


def report_bad_progress(fraction: Any, message: Any, *, ctx: JobContext) -> None:
    """Report a bad progress ("nan" stands for the float, "NUL" for a message holding
    one: JSON kwargs cannot carry them)."""
    if fraction == "nan":
        fraction = float(fraction)
    if message == "NUL":
        message = "a\x00b"
    ctx.progress_sync(fraction, message)


BY_EXECUTOR: dict[str, dict[str, Callable[..., Any]]] = {
    "asyncio": {
        "hang": charge_then_hang,
        "fail": charge_then_fail_first,
        "takeover": charge_after_takeover,
        "progress": report_progress_async,
    },
    "threads": {
        "hang": charge_then_hang_sync,
        "fail": charge_then_fail_first_sync,
        "takeover": charge_after_takeover_sync,
        "progress": report_progress,
    },
    "processes": {
        "hang": charge_then_hang_sync,
        "fail": charge_then_fail_first,  # a coroutine on the child's own loop
        "takeover": charge_after_takeover_sync,
        "progress": report_progress,
    },
}
"""The job of each kind that each executor runs (threads and processes: sync ones, but
a coroutine in a child too)."""
