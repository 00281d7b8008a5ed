"""The loop every leader service shares: ticks while leading, survives a failed tick,
drains while batches come back full."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from chancy.services import LeaderService
from tests.support.waiting import until


class Counting(LeaderService):
    """A service whose ticks are counted, and fail while ``failing``."""

    name = "counting"
    activity = "counting"

    def __init__(self, *, leading: bool, batch: int | None = None) -> None:
        self.leadership = SimpleNamespace(is_leader=leading)
        super().__init__(None, self.leadership, interval=0, batch=batch)  # type: ignore[arg-type]
        self.ticks = 0
        self.failing = False

    async def run_once(self) -> int:
        self.ticks += 1
        if self.failing:
            raise RuntimeError("database gone")
        return 0


@contextlib.asynccontextmanager
async def running(service: LeaderService) -> AsyncIterator[None]:
    task = asyncio.create_task(service.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_service_ticks_only_while_its_worker_leads() -> None:
    service = Counting(leading=False)
    async with running(service):
        for _ in range(20):
            await asyncio.sleep(0)
        assert service.ticks == 0
        service.leadership.is_leader = True
        await until(lambda: service.ticks >= 3)


async def test_a_failed_tick_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = Counting(leading=True)
    service.failing = True
    async with running(service):
        await until(lambda: service.ticks >= 2)
    assert "counting failed (database gone)" in caplog.text
    assert caplog.records[0].name == "chancy.counting"


async def test_drain_runs_batches_until_one_comes_back_short() -> None:
    service = Counting(leading=True, batch=2)
    sizes = iter([2, 2, 1, 2])
    limits: list[int] = []

    async def step(limit: int) -> int:
        limits.append(limit)
        return next(sizes)

    assert await service.drain(step) == 5
    assert limits == [2, 2, 2]
