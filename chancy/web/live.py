"""Live updates: chancy's LISTEN connection fanned out to the open pages as server-sent
events, debounced.

One subscription to the process's :class:`~chancy.listener.Listener` serves every
client: an event marks the dashboard changed, and at most once per ``debounce`` seconds
each open page is told so (``event: changed``) and reloads its live part. A page never
polls the database: it reads it again only when something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from chancy.events import Event

Subscribe = Callable[[Callable[[Event], None]], Callable[[], None]]

__all__ = ["DEBOUNCE_DEFAULT", "KEEPALIVE_INTERVAL", "LiveUpdates"]

DEBOUNCE_DEFAULT = 0.5
KEEPALIVE_INTERVAL = 15.0


class LiveUpdates:
    """Tells every subscribed client, at most once per ``debounce`` seconds, that chancy
    announced a change."""

    def __init__(self, *, debounce: float = DEBOUNCE_DEFAULT) -> None:
        self.debounce = debounce
        self._clients: set[asyncio.Queue[str]] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def ensure_started(self, subscription: Callable[[], Awaitable[Subscribe]]) -> None:
        """Start once, however many first clients arrive at once: ``subscription()``
        gives the listener's ``subscribe`` (it may open the LISTEN connection)."""
        if self._task is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._task is None:  # no other client started it while this one waited
                self.start(await subscription())

    def start(self, subscribe: Subscribe) -> None:
        """Subscribe to the listener and start telling clients."""
        self._unsubscribe = subscribe(self.on_event)
        self._task = asyncio.create_task(self._fan_out(), name="chancy-web-live")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def on_event(self, event: Event) -> None:
        """A notification arrived (or the listener reconnected): the pages are stale."""
        self._changed.set()

    async def _fan_out(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            for queue in list(self._clients):
                if queue.empty():  # a client that has not read the last one needs no other
                    queue.put_nowait("changed")
            await asyncio.sleep(self.debounce)

    async def stream(self) -> AsyncGenerator[str, None]:
        """The server-sent events of one client: ``changed`` after each change, and a
        comment every :data:`KEEPALIVE_INTERVAL` seconds so proxies keep it open."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._clients.add(queue)
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    kind = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_INTERVAL)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"event: {kind}\ndata: {{}}\n\n"
        finally:
            self._clients.discard(queue)
