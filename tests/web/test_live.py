"""Live updates: chancy's notifications reach every open page, debounced, and a page
with nothing new is told nothing."""

from __future__ import annotations

import asyncio
import contextlib

from chancy.app import Chancy
from chancy.executor import Job
from chancy.web.live import LiveUpdates, Subscribe
from tests.support import tasks

JOB = Job.from_func(tasks.greet, kwargs={"name": "live"})


async def test_a_push_tells_every_client_once_per_debounce(chancy: Chancy) -> None:
    live = LiveUpdates(debounce=0.2)
    live.start((await chancy.listener()).subscribe)
    streams = [live.stream(), live.stream()]
    try:
        assert [await anext(stream) for stream in streams] == ["retry: 2000\n\n"] * 2
        waiting = [asyncio.ensure_future(anext(stream)) for stream in streams]
        await asyncio.sleep(0)
        assert live.clients == 2
        await chancy.push_many("default", [JOB] * 5)
        told = await asyncio.wait_for(asyncio.gather(*waiting), timeout=10)
        assert told == ["event: changed\ndata: {}\n\n"] * 2
    finally:
        for stream in streams:
            await stream.aclose()
        await live.stop()
    assert live.clients == 0


async def test_without_a_change_a_client_is_told_nothing(chancy: Chancy) -> None:
    live = LiveUpdates(debounce=0.05)
    live.start((await chancy.listener()).subscribe)
    stream = live.stream()
    try:
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        done, _ = await asyncio.wait([waiting], timeout=0.5)
        assert not done
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    finally:
        await stream.aclose()
        await live.stop()


async def test_clients_arriving_at_once_start_one_subscription(chancy: Chancy) -> None:
    live = LiveUpdates(debounce=0.05)
    subscriptions = 0
    listener = await chancy.listener()

    async def subscription() -> Subscribe:
        nonlocal subscriptions
        subscriptions += 1
        await asyncio.sleep(0)  # opening the LISTEN connection: the others arrive meanwhile
        return listener.subscribe

    try:
        await asyncio.gather(*[live.ensure_started(subscription) for _ in range(5)])
        assert subscriptions == 1
    finally:
        await live.stop()
