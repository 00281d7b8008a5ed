"""One LISTEN connection per process, fanned out to whoever subscribes.

chancy's statements announce what they did on the ``chancy_events`` channel (the events
are listed in :mod:`chancy.events`). Notifications are an accelerator, never the only
path: when the connection is lost the listener reconnects with backoff and sends its
subscribers a ``reconnected`` event, so they look again for whatever they may have missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.events import EVENTS_CHANNEL, Event, EventKind

__all__ = ["RECONNECT_DELAY_MAX", "Event", "Listener"]

log = logging.getLogger("chancy.listener")

Subscriber = Callable[[Event], None]

RECONNECT_DELAY_MIN = 0.1
RECONNECT_DELAY_MAX = 5.0
HEALTH_CHECK_INTERVAL = 10.0
HEALTH_CHECK_TIMEOUT = 5.0
RECONNECTED: Event = {"event": EventKind.RECONNECTED}


class Listener:
    """Holds one connection that LISTENs on ``chancy_events`` while it is started."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every event; returns the function that unsubscribes."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    async def start(self) -> None:
        """Connect (in the background, retrying) and wait up to a few seconds for it."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chancy-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=5)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    def _dispatch(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("a subscriber failed on %s", event.get("event"))

    def _on_notification(self, *args: Any) -> None:
        try:
            event = json.loads(args[3])
        except (ValueError, IndexError):
            return
        if isinstance(event, dict):
            self._dispatch(cast(Event, event))

    async def _run(self) -> None:
        delay = RECONNECT_DELAY_MIN
        first = True
        while True:
            try:
                async with self._connection() as driver:
                    lost = await self._listen(driver)
                    delay = RECONNECT_DELAY_MIN
                    if not first:
                        self._dispatch(RECONNECTED)
                    first = False
                    await self._watch(driver, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RECONNECT_DELAY_MAX)

    async def _watch(self, driver: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is lost, or stops answering a periodic ping (a
        silent network failure would otherwise go unnoticed forever)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=HEALTH_CHECK_INTERVAL)
                return
            try:
                await asyncio.wait_for(driver.execute("SELECT 1"), timeout=HEALTH_CHECK_TIMEOUT)
            except Exception as exc:
                log.warning("LISTEN connection stopped answering (%s); reconnecting", exc)
                return

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """An asyncpg connection to LISTEN on: one of the engine's, discarded afterwards
        (it was LISTENing), or, when the engine runs on another driver, one of its own to
        the engine's server."""
        if self._engine.dialect.driver == "asyncpg":
            async with self._engine.connect() as connection:
                raw = await connection.get_raw_connection()
                yield cast(asyncpg.Connection, raw.driver_connection)
                await connection.invalidate()
            return
        url = self._engine.url.set(drivername="postgresql")
        driver = await asyncpg.connect(url.render_as_string(hide_password=False))
        try:
            yield driver
        finally:
            with contextlib.suppress(Exception):
                await driver.close(timeout=HEALTH_CHECK_TIMEOUT)

    async def _listen(self, driver: asyncpg.Connection) -> asyncio.Event:
        """LISTEN on ``driver``; the returned event is set when it is lost."""
        lost = asyncio.Event()
        driver.add_termination_listener(lambda _connection: lost.set())
        await driver.add_listener(EVENTS_CHANNEL, self._on_notification)
        self.connected.set()
        return lost
