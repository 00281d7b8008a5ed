"""The settings of a worker's queues as the database holds them (pause, limits, keys)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import retry_once
from chancy.queue import QueueInfo
from chancy.repository import QueueRepository

__all__ = ["QUEUE_REFRESH_INTERVAL_DEFAULT", "QueueSettingsWatcher"]

log = logging.getLogger("chancy.worker")

QUEUE_REFRESH_INTERVAL_DEFAULT = 5.0


class QueueSettingsWatcher:
    """Holds the stored settings of the queues ``names``, and reloads them when told they
    changed (:meth:`changed`: a notification) or every ``interval`` seconds in case a
    notification was lost. Each queue whose settings changed is passed to
    ``on_change(name)`` after a reload (the worker wakes its producer). A failed reload is
    logged and tried again at the next change or interval.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        names: Iterable[str],
        *,
        on_change: Callable[[str], None],
        interval: float = QUEUE_REFRESH_INTERVAL_DEFAULT,
    ) -> None:
        self._engine = engine
        self._queues = QueueRepository()
        self.names = frozenset(names)
        self.interval = interval
        self._on_change = on_change
        self._changed = asyncio.Event()
        self.settings: dict[str, QueueInfo] = {}

    def changed(self) -> None:
        """The settings may have changed: reload them now."""
        self._changed.set()

    async def load(self) -> None:
        """Read the settings of the queues, without telling anyone."""
        infos = await retry_once(self._engine.connect, self._queues.list_all, repeatable=True)
        self.settings = {info.name: info for info in infos if info.name in self.names}

    async def run_once(self) -> int:
        """Reload the settings; returns how many queues' settings changed."""
        before = self.settings
        await self.load()
        changed = [name for name, info in self.settings.items() if before.get(name) != info]
        for name in changed:
            self._on_change(name)
        return len(changed)

    async def run(self) -> None:
        """Reload on every change, and every ``interval`` seconds, until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.interval)
            self._changed.clear()
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("reading the queues' settings failed (%s); retrying", exc)
