"""Group commit of concurrent pushes: single-job pushes of one :class:`~chancy.app.Chancy`
that arrive while its push statements are in flight go together, as one statement and one
transaction, once a statement comes back.

Many tasks of one process pushing single jobs (request handlers of a web application)
otherwise each pay a pooled connection, a round trip and a commit per job; sent together
they pay one of each per batch. Nothing waits for a timer: a push that finds a free lane
(fewer than ``lanes`` statements in flight) is sent at once, as it always was, so a lone
producer and an idle application see no difference; only pushes that would otherwise
queue for a connection are batched.

The batch behaves as its pushes one after the other would:

- each caller gets its own :class:`~chancy.jobs.Reference`; of two pushes of a batch with
  one unique key, the second gets the first's reference with ``existing`` set, as it
  would if pushed after it;
- a batch the server refused (an undeclared queue, a value PostgreSQL rejects, a lock
  timeout on one job's queue) stored nothing: its pushes are sent again one by one, so
  each gets its own outcome and one bad job fails only its own push; an error that
  leaves the outcome unknown (a connection lost mid-statement) is raised to every push
  of the batch, as it would have been to each;
- a push cancelled while it waits is taken out and stores nothing; once its batch is
  sent, the batch goes on without it (its job is stored, like a push cancelled while its
  own statement ran may be), unless the server refuses the batch: then it is not sent
  again.

A statement that stays in flight (waiting on a lock: a unique key an application's open
transaction pushed, a queue row locked) holds up no other push for long: pushes that
have waited :data:`STALLED_AFTER` seconds behind it are sent anyway, as a batch of their
own on another connection of the pool, as they would have been without group commit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence

from chancy.database.engine import answered_by_server
from chancy.jobs import Job, Reference
from chancy.repository.push import CHUNK_SIZE

__all__ = ["LANES_DEFAULT", "STALLED_AFTER", "GroupCommit"]

LANES_DEFAULT = 1
"""Push statements of one Chancy in flight at once before the next pushes are batched."""

STALLED_AFTER = 0.2
"""Seconds a push waits behind the statements in flight before it is sent without them
(far longer than a push statement takes, unless it waits on a lock)."""

Send = Callable[[Sequence[Job]], Awaitable[list[Reference]]]
"""Push a batch of jobs in one transaction (committed once it returns)."""


class _Waiting:
    """A queued push: its job and the future its caller awaits."""

    __slots__ = ("future", "job", "since")

    def __init__(self, job: Job, future: asyncio.Future[Reference], since: float) -> None:
        self.job = job
        self.future = future
        self.since = since


class GroupCommit:
    """The group commit of one Chancy's single-job pushes, on one event loop (the one of
    its first push; a push from another loop is sent on its own). ``send`` pushes a
    batch; ``batches`` counts the batches of more than one job sent."""

    def __init__(self, send: Send, *, lanes: int = LANES_DEFAULT) -> None:
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._send = send
        self.lanes = lanes
        self._in_flight = 0
        self._queue: list[_Waiting] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatching = False
        self._idle: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stall_timer: asyncio.TimerHandle | None = None
        self._switching = threading.Lock()
        self.batches = 0

    async def push(self, job: Job) -> Reference:
        """Push ``job``: at once on a free lane, else with the pushes queued meanwhile."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop and not self._adopt(loop):
            return (await self._send([job]))[0]  # another loop's: not batched
        if self._in_flight < self.lanes and not self._queue and not self._dispatching:
            self._in_flight += 1
            try:
                return (await self._send([job]))[0]
            finally:
                self._in_flight -= 1
                self._dispatch_soon()
                self._tell_if_idle()
        waiting = _Waiting(job, loop.create_future(), loop.time())
        self._queue.append(waiting)
        if self._stall_timer is None:
            self._stall_timer = loop.call_later(STALLED_AFTER, self._send_stalled)
        return await waiting.future  # cancelled: _dispatch skips it, unsent

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Make ``loop`` the group commit's if no other loop still runs with it (the
        first push, or the first since the last loop stopped): its state is reset. From
        another thread at once, while that loop runs, its pushes are not batched."""
        with self._switching:
            owner = self._loop
            if owner is not None and not owner.is_closed() and owner.is_running():
                return False
            self._loop, self._in_flight, self._dispatching = loop, 0, False
            self._queue, self._tasks, self._idle = [], set(), []
            self._stall_timer = None
            return True

    def _dispatch_soon(self, *, answered: bool = False) -> None:
        """Dispatch what is queued once the callers just ``answered`` (by a batch) have
        run: those that push again at once (a producer's loop) join the next batch rather
        than go on their own ahead of it."""
        if (self._queue or answered) and not self._dispatching:
            self._dispatching = True
            asyncio.get_running_loop().call_soon(self._dispatch)

    def _dispatch(self) -> None:
        """Send what is queued, as batches of up to :data:`CHUNK_SIZE`, on free lanes."""
        self._dispatching = False
        while self._queue and self._in_flight < self.lanes:
            self._send_next()
        self._tell_if_idle()

    def _send_next(self) -> None:
        """Send the next batch of what is queued (up to :data:`CHUNK_SIZE`)."""
        batch = [waiting for waiting in self._queue[:CHUNK_SIZE] if not waiting.future.done()]
        del self._queue[:CHUNK_SIZE]
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_stalled(self) -> None:
        """Send, on a lane of their own, the pushes that waited :data:`STALLED_AFTER`
        seconds: the statements in flight are stuck (on a lock, say)."""
        self._stall_timer = None
        loop = asyncio.get_running_loop()
        while self._queue and loop.time() - self._queue[0].since >= STALLED_AFTER:
            self._send_next()
        if self._queue:
            due = self._queue[0].since + STALLED_AFTER
            self._stall_timer = loop.call_at(due, self._send_stalled)
        self._tell_if_idle()

    def _tell_if_idle(self) -> None:
        """Wake :meth:`close` once nothing is in flight, queued or about to be sent."""
        if self._in_flight or self._queue or self._dispatching:
            return
        idle, self._idle = self._idle, []
        for future in idle:
            if not future.done():
                future.set_result(None)

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) > 1:
                self.batches += 1
            try:
                references = await self._send([waiting.job for waiting in batch])
            except Exception as exc:
                if len(batch) == 1 or not answered_by_server(exc):
                    for waiting in batch:
                        _fail(waiting, exc)
                    return
                # Refused as a whole, so nothing is stored: each on its own (but those
                # whose callers gave up meanwhile: they store nothing, as they were told).
                for waiting in batch:
                    if waiting.future.done():
                        continue
                    try:
                        (reference,) = await self._send([waiting.job])
                    except Exception as one:
                        _fail(waiting, one)
                    else:
                        _resolve(waiting, reference)
                return
            for waiting, reference in zip(batch, references, strict=True):
                _resolve(waiting, reference)
        except BaseException:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.cancel()
            raise
        finally:
            self._in_flight -= 1
            self._dispatch_soon(answered=True)

    async def close(self) -> None:
        """Wait until the pushes in flight and those queued are sent (their callers are
        told their outcome)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            return  # nothing of this loop's is under way
        if self._in_flight or self._queue or self._dispatching:
            idle = loop.create_future()
            self._idle.append(idle)
            await idle
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _resolve(waiting: _Waiting, reference: Reference) -> None:
    if not waiting.future.done():
        waiting.future.set_result(reference)


def _fail(waiting: _Waiting, exc: BaseException) -> None:
    if not waiting.future.done():
        waiting.future.set_exception(exc)
