"""Writing outcomes in batches: one statement for many finished attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from chancy.database.engine import hot_connection
from chancy.repository import Attempt, AttemptRepository, Outcome
from chancy.repository.runner import HotExecutable, sqlstate_of
from chancy.states import JobState
from chancy.worker.held_connection import HeldConnection
from chancy.worker.outcomes import storable_text

__all__ = ["FLUSH_BATCH_DEFAULT", "FLUSH_INTERVAL_DEFAULT", "Completer"]

log = logging.getLogger("chancy.worker")

FLUSH_INTERVAL_DEFAULT = 0.005
FLUSH_BATCH_DEFAULT = 200
RETRY_DELAY_MAX = 5.0
T = TypeVar("T")


class Completer:
    """Collects outcomes and releases, and writes them every ``flush_interval`` seconds
    or as soon as ``flush_batch`` are waiting. A write that fails is retried with backoff;
    the outcomes stay in memory (their leases are still renewed) until written. An
    outcome the database rejects as stale (its attempt lost the job) is logged and
    dropped, unless its job had completed itself in that attempt's transaction
    (``JobContext.complete_in``): that is counted in :attr:`completed_in_transaction`,
    as it should be. An outcome the database refuses as data (which :mod:`~chancy.worker.outcomes`
    never makes) is found by writing the batch's outcomes one by one, and fails its job
    saying so: one outcome never holds back the others.

    Outcomes and releases are added and written on the worker's loop; :attr:`unwritten`
    may be read from any thread (the heartbeat's, while a job blocks the loop). They are
    written on ``connection`` (the worker's held connection) if given, else on a
    connection of ``engine``'s pool per write.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        flush_interval: float = FLUSH_INTERVAL_DEFAULT,
        flush_batch: int = FLUSH_BATCH_DEFAULT,
        connection: HeldConnection | None = None,
    ) -> None:
        self._engine = engine
        self._connection = connection
        self._attempts = AttemptRepository()
        self.flush_interval = flush_interval
        self.flush_batch = flush_batch
        self._outcomes: list[Outcome] = []
        self._releases: list[Attempt] = []
        self._lock = threading.Lock()  # held to change the two lists, or to copy them elsewhere
        self._ready = asyncio.Event()
        self._written = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None
        self.stale_rejected = 0
        self.completed_in_transaction = 0

    @property
    def unwritten(self) -> list[Attempt]:
        """The attempts whose outcome is not written yet (their leases must be kept)."""
        with self._lock:
            outcomes, releases = list(self._outcomes), list(self._releases)
        return [Attempt(o.id, o.fence) for o in outcomes] + releases

    @property
    def backlog(self) -> int:
        """How many outcomes and releases wait to be written."""
        return len(self._outcomes) + len(self._releases)

    async def wait_for_backlog_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` outcomes wait: the worker claims no more jobs
        while the database cannot keep up with their outcomes, so memory stays bounded."""
        while self.backlog >= limit:
            self._written.clear()
            await self._written.wait()

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
        self._ready.set()

    def release(self, attempt: Attempt) -> None:
        """Give ``attempt``'s job back (ready again at once) with the next write."""
        with self._lock:
            self._releases.append(attempt)
        self._ready.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chancy-completer")

    async def stop(self, *, attempts: int = 3) -> None:
        """Write what is left (trying ``attempts`` times), then stop. A write under way is
        finished first, never cut off: cut off after its statement committed, its outcomes
        would be sent again, and refused as stale."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._flushing is not None:
            await asyncio.wait({self._flushing})
            if not self._flushing.cancelled() and self._flushing.exception() is not None:
                log.warning("writing outcomes failed (%s)", self._flushing.exception())
        for attempt in range(attempts):
            try:
                await self.flush()
                return
            except Exception as exc:
                log.warning("could not write %d outcomes (%s)", len(self._outcomes), exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error(
            "%d outcomes were not written; those jobs run again once their leases expire",
            len(self._outcomes) + len(self._releases),
        )

    async def flush(self) -> None:
        """Write the outcomes waiting (up to ``flush_batch``) and the attempts to give
        back: one statement each, each its own transaction, so an outcome is never held
        back by a release or the other way round. What a statement wrote leaves memory
        at once, so it is never sent twice."""
        failures: list[Exception] = []
        for write in (self._flush_outcomes, self._flush_releases):
            try:
                await write()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    async def _flush_outcomes(self) -> None:
        outcomes = self._outcomes[: self.flush_batch]
        if not outcomes:
            return
        written = await self._complete(outcomes)
        with self._lock:
            del self._outcomes[: len(outcomes)]
        self._written.set()
        refused = [o for o in outcomes if o.id not in written]
        completed = await self._completed_in_transaction(refused)
        for stale in (o for o in refused if o.id not in completed):
            self.stale_rejected += 1
            log.warning(
                "job %d attempt %d: outcome %s not written, the attempt no longer holds the "
                "job (cancelled, or its lease expired and another worker took over)",
                stale.id,
                stale.attempt,
                stale.state.value,
            )

    async def _completed_in_transaction(self, refused: list[Outcome]) -> set[int]:
        """The ids of the ``refused`` outcomes whose job completed itself in its own
        transaction in that attempt (``JobContext.complete_in``): their refusal is as it
        should be, not a lost job. Only outcomes marked ``context_completed`` are looked
        up, so other jobs cost nothing here."""
        marked = [Attempt(o.id, o.fence) for o in refused if o.context_completed]
        if not marked:
            return set()
        try:
            completed = await self._on_connection(
                lambda connection: self._attempts.succeeded_many(connection, marked)
            )
        except Exception as exc:
            log.warning("could not read whether jobs completed themselves (%s)", exc)
            return set()
        for job_id in completed:
            log.debug("job %d had completed itself in its transaction", job_id)
        self.completed_in_transaction += len(completed)
        return completed

    async def _flush_releases(self) -> None:
        releases = list(self._releases)
        if not releases:
            return
        await self._on_connection(
            lambda connection: self._attempts.release_many_if_running(connection, releases)
        )
        with self._lock:
            del self._releases[: len(releases)]
        self._written.set()

    async def _complete(self, outcomes: list[Outcome]) -> set[int]:
        """Write ``outcomes`` in one statement; returns the ids written. Should the
        database refuse one as data, each is written alone (see :meth:`_complete_each`)."""
        try:
            return await self._on_connection(
                lambda connection: self._attempts.complete_many_if_running(connection, outcomes)
            )
        except Exception as exc:
            if not _refused_as_data(exc):
                raise
            log.error("the database refused a batch of %d outcomes (%s)", len(outcomes), exc)
        return await self._complete_each(outcomes)

    async def _complete_each(self, outcomes: list[Outcome]) -> set[int]:
        """Write ``outcomes`` one by one; one the database refuses fails its job instead,
        with an error saying why."""
        written: set[int] = set()
        for outcome in outcomes:
            try:
                written |= await self._write_one(outcome)
                continue
            except Exception as exc:
                if not _refused_as_data(exc):
                    raise
                failed = _not_storable(outcome, exc)
            log.error("job %d: %s", outcome.id, failed.error and failed.error["message"])
            written |= await self._write_one(failed)
        return written

    async def _write_one(self, outcome: Outcome) -> set[int]:
        return await self._on_connection(
            lambda connection: self._attempts.complete_many_if_running(connection, [outcome])
        )

    async def _on_connection(self, write: Callable[[HotExecutable], Awaitable[T]]) -> T:
        """``write`` on the held connection, or on one of the pool's."""
        if self._connection is not None:
            return await self._connection.run(write)
        async with hot_connection(self._engine) as connection:
            return await write(connection)

    async def _run(self) -> None:
        delay = self.flush_interval
        while True:
            await self._ready.wait()
            await asyncio.sleep(self.flush_interval)
            self._ready.clear()
            try:
                # Shielded: stop() cancels this loop, never a write under way (it waits).
                self._flushing = asyncio.ensure_future(self.flush())
                await asyncio.shield(self._flushing)
                delay = self.flush_interval
            except Exception as exc:
                delay = min(max(delay * 2, 0.1), RETRY_DELAY_MAX)
                log.warning("writing outcomes failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            if self._outcomes or self._releases:
                self._ready.set()


def _refused_as_data(exc: BaseException) -> bool:
    """Whether ``exc`` says the database (or its driver) refused the values written, so
    that writing them again would fail again: an SQLSTATE of class 22 ("data exception",
    such as a NUL character in JSON), or a value the driver could not encode."""
    if isinstance(exc, TypeError | ValueError):
        return True
    if isinstance(exc, DBAPIError):
        state = sqlstate_of(exc) or ""
        return state.startswith("22") or isinstance(exc.orig, TypeError | ValueError)
    return False


def _not_storable(outcome: Outcome, exc: BaseException) -> Outcome:
    """The outcome that fails ``outcome``'s job, saying why ``outcome`` was not stored."""
    reason = storable_text(str(getattr(exc, "orig", None) or exc).splitlines()[0])
    message = (
        f"the outcome of this attempt ({outcome.state.value}) could not be stored: "
        f"{reason}; the job failed instead"
    )
    error = {"attempt": outcome.attempt, "type": "OutcomeNotStorable", "message": message}
    return Outcome(outcome.id, outcome.fence, JobState.FAILED, error=error, attempt=outcome.attempt)
