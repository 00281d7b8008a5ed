"""The worker's leases, kept from a thread of their own.

A job's coroutine that computes, or calls something slow, without awaiting holds the
worker's event loop for as long as it runs. The leases of the worker's jobs, and its lease
as the leader, must not wait for it: expired, they would be taken over and the jobs run a
second time by another worker while they still run here. So the
:class:`~chancy.worker.heartbeat.Heartbeat` and the
:class:`~chancy.services.leader.Leadership` renewals run on an event loop of their own, in
a thread, with an engine of their own (:func:`~chancy.database.engine.twin_engine`: an
asyncio connection belongs to the loop that opened it). They read what the worker holds
from the producers and the completer, which guard it with locks, and hand the attempts
found lost back to the worker's loop (``call_soon_threadsafe``), which stops their runs
once it is free again. A renewal that fails is logged and tried again at the next beat,
as before; nothing else in the worker changes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import twin_engine
from chancy.repository import Attempt, WorkerPresence
from chancy.services.leader import Leadership
from chancy.worker.heartbeat import Heartbeat

__all__ = ["LEASE_KEEPER_STOP_TIMEOUT", "LeaseKeeper"]

log = logging.getLogger("chancy.worker")

# How long a stop waits for the thread; its resignation and its connections' closing are
# each bounded by STEP_TIMEOUT, so a dead database cannot hold a worker's stop up longer.
LEASE_KEEPER_STOP_TIMEOUT = 10.0
STEP_TIMEOUT = 4.0
# How often the thread looks whether the worker's loop is gone (a worker abandoned
# without a stop): its leases are then no longer renewed.
OWNER_CHECK_INTERVAL = 1.0


class LeaseKeeper:
    """Runs a worker's heartbeat (``lease_seconds``; ``running``, ``unwritten``, ``lost``
    and ``presence`` as :class:`~chancy.worker.heartbeat.Heartbeat` takes them, ``lost``
    called on the worker's loop) and its leader election (``leader_ttl``, see
    :attr:`leadership`) in a thread of their own, from :meth:`start` until :meth:`stop`.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        worker_id: str,
        *,
        lease_seconds: float,
        leader_ttl: float,
        running: Callable[[], Sequence[Attempt]],
        unwritten: Callable[[], Sequence[Attempt]],
        lost: Callable[[int], object],
        presence: WorkerPresence | None = None,
    ) -> None:
        self._engine = twin_engine(engine)
        self.leadership = Leadership(self._engine, worker_id, ttl=leader_ttl)
        self.heartbeat = Heartbeat(
            self._engine,
            lease_seconds=lease_seconds,
            running=running,
            unwritten=unwritten,
            lost=self._report_lost,
            presence=presence,
        )
        self._lost = lost
        self._owner: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Start the thread; returns once the first election has run (so
        :attr:`leadership` says whether this worker leads)."""
        self._owner = asyncio.get_running_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        elected: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready, elected)),
            name="chancy-leases",
            daemon=True,
        )
        self._thread.start()
        await asyncio.wrap_future(ready)  # from now on, stop() reaches the thread
        await asyncio.wrap_future(elected)

    async def stop(self) -> None:
        """Stop renewing: resign leadership, close the connections and end the thread
        (waiting at most :data:`LEASE_KEEPER_STOP_TIMEOUT` seconds)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stopping.set)
        await asyncio.to_thread(thread.join, LEASE_KEEPER_STOP_TIMEOUT)
        if thread.is_alive():
            log.error(
                "the lease renewals did not stop within %.0f s; given up",
                LEASE_KEEPER_STOP_TIMEOUT,
            )

    async def _serve(
        self, ready: concurrent.futures.Future[None], elected: concurrent.futures.Future[None]
    ) -> None:
        """The thread's loop: elect, then renew until stopped; then resign and close."""
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        ready.set_result(None)
        renewals: list[asyncio.Task[None]] = []
        try:
            await self.leadership.run_once()
            # False once the start waiting for it was cancelled (after that, no cancel can
            # come in between): then resign and end.
            if not elected.set_running_or_notify_cancel():
                return
            elected.set_result(None)
            renewals = [
                asyncio.create_task(self.heartbeat.run(), name="chancy-heartbeat"),
                asyncio.create_task(self.leadership.run(), name="chancy-leadership"),
            ]
            await self._until_stopped()
        finally:
            for task in renewals:
                task.cancel()
            await asyncio.gather(*renewals, return_exceptions=True)
            await self._bounded(self.leadership.resign(), "resigning")
            await self._bounded(self._engine.dispose(), "closing the lease connections")
            if not elected.done():
                elected.set_result(None)

    async def _until_stopped(self) -> None:
        """Return once :meth:`stop` is called, or the worker's loop is gone."""
        assert self._stopping is not None
        while self._owner is not None and not self._owner.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=OWNER_CHECK_INTERVAL)
                return

    def _report_lost(self, job_id: int) -> None:
        """Hand a lost attempt to the worker's loop, which stops its run when it can."""
        if self._owner is None:
            return
        with contextlib.suppress(RuntimeError):  # the worker's loop is closed: nothing runs
            self._owner.call_soon_threadsafe(self._lost, job_id)

    @staticmethod
    async def _bounded(step: Awaitable[None], what: str) -> None:
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await step
        except TimeoutError:
            log.error("%s took longer than %.0f s; given up", what, STEP_TIMEOUT)
        except Exception as exc:
            log.warning("%s failed (%s)", what, exc)
