"""Chancy: the entry point. Owns (or borrows) the engine and pushes and reads jobs.

::

    async with Chancy(dsn="postgresql://localhost/postgres",
                      queues=[Queue(name="default", concurrency=10)]) as chancy:
        await chancy.migrate()
        ref = await chancy.push("default", Job.from_func(send_email, kwargs={"to": "a@b.c"}))
        job = await chancy.get_job(ref)
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType, TracebackType
from typing import Any, Self, overload

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from chancy import migrations
from chancy.allowed import AllowedFunctions
from chancy.cron import Cron
from chancy.database.dsn import describe, resolve_url, secrets_of
from chancy.database.engine import (
    can_spare_connection,
    check_reachable,
    create_engine,
    hot_connection,
    lends_at_once,
    retry_once,
    twin_engine,
)
from chancy.database.timeouts import (
    LOCK_TIMEOUT_DEFAULT,
    STATEMENT_TIMEOUT_DEFAULT,
    Timeouts,
    local_timeouts,
)
from chancy.errors import (
    ChancyError,
    ConfigurationError,
    InvalidQueueError,
    QueueNotEmptyError,
    UniqueKeyHeldError,
    UnknownQueueError,
)
from chancy.events import Event, EventKind
from chancy.group_commit import GroupCommit
from chancy.jobs import QUEUE_DEFAULT, Job, QueuedJob, Reference, many_jobs, one_job
from chancy.listener import Listener
from chancy.queue import Queue, QueueInfo
from chancy.repository import (
    JobRepository,
    MaintenanceRepository,
    PushRepository,
    QueueRepository,
)
from chancy.repository.push import MAX_KWARGS_BYTES_DEFAULT, Pushed, check_kwargs_size
from chancy.repository.runner import HotExecutable, sqlstate_of, translated
from chancy.states import FINISHED_STATES, JobState
from chancy.wakeups import WakeUps, on_engine, wake_after_commit
from chancy.worker.held_connection import HeldConnection
from chancy.workflow import Workflow, WorkflowReference, WorkflowState
from chancy.workflow_client import WorkflowClient

__all__ = ["MAX_KWARGS_BYTES_DEFAULT", "Chancy", "RetriedJobs"]

Transaction = AsyncSession | AsyncConnection
WAIT_POLL_INTERVAL_DEFAULT = 1.0
_DEADLOCK_RETRIES = 5
"""How many times a push chancy commits itself is tried when it deadlocks with another
(see :meth:`Chancy._push_on_own_connection`)."""
_DEADLOCK_DETECTED = "40P01"
log = logging.getLogger("chancy.push")
# Migrations wait for each other (an advisory lock) and may rewrite big tables: chancy's
# own timeouts would fail them, so they run without (for their transaction only).
_NO_TIMEOUTS_FOR_MIGRATIONS = sa.text(
    "SELECT set_config('lock_timeout', '0', true), set_config('statement_timeout', '0', true)"
)
_MIGRATION_DENIED_HINT = (
    "Run migrations (`chancy migrate`, `await chancy.migrate()`) as the role that owns "
    "chancy's tables; the roles that push and run jobs need only the grants printed by "
    "`chancy grants --role NAME`"
)


class RetriedJobs(int):
    """What :meth:`Chancy.retry_jobs` did: an ``int``, how many jobs are back in their
    queue (so ``retried == 5`` and arithmetic work as they always did), and
    ``skipped``: the jobs left as they were because an unfinished job holds their unique
    key, each id mapped to its holder's id."""

    skipped: Mapping[int, int]

    def __new__(cls, retried: int = 0, skipped: Mapping[int, int] | None = None) -> Self:
        made = super().__new__(cls, retried)
        made.skipped = MappingProxyType(dict(skipped or {}))
        return made

    def __str__(self) -> str:
        return int.__repr__(self)

    def __repr__(self) -> str:
        return f"RetriedJobs({int(self)}, skipped={dict(self.skipped)})"


class Chancy:
    """A handle on one chancy database: push jobs, read them, migrate the schema.

    The database is, in order: ``engine`` (an ``AsyncEngine`` of the application's, used
    as is and never disposed by chancy), ``dsn``, the ``CHANCY_DSN`` environment variable,
    and last an embedded PostgreSQL started on first use. ``queues`` are the queues a
    worker started from this instance runs; they are declared (with their cluster-wide
    limits) before the first push. ``schedules`` are :class:`~chancy.cron.Cron`
    schedules, stored when a worker starts and pushed by the elected leader; a starting
    worker also deletes the stored schedules that are not among them (logging each),
    unless ``prune_schedules`` is False: for apps whose deployments each declare some of
    the schedules of one database (remove a schedule by hand then).
    ``engine_options`` are passed to
    ``create_async_engine`` when chancy makes the engine itself.

    Security settings (see the README's "Security" section):

    - ``allowed``: glob patterns on the dotted names of the functions its workers may run,
      such as ``["myapp.tasks.*", "myapp.billing:charge"]`` (see :mod:`chancy.allowed`).
      None or empty: any importable function (the worker warns when it starts).
    - ``aliases``: for functions renamed or moved, the name jobs stored to the function's
      new name, such as ``{"myapp.old_name": "myapp.tasks.new_name"}``: its workers run
      the new function for jobs that name the old one, allowed (by ``allowed``) under
      the new name.
    - ``max_kwargs_bytes``: the largest kwargs a push stores, in bytes of JSON (default
      1 MiB; None: no limit); a larger one raises :class:`InvalidKwargsError` and
      nothing is stored.
    - ``lock_timeout``, ``statement_timeout``: seconds (default 5 and 30; None: chancy
      sets none). Every connection of an engine chancy creates has them; a push in the
      application's transaction (``session=``) runs with them and then gives the
      transaction its own values back. An engine passed as ``engine=`` is left as it is.

    Use it as an async context manager (or call :meth:`open` and :meth:`close`).
    """

    def __init__(
        self,
        dsn: str | URL | None = None,
        *,
        engine: AsyncEngine | None = None,
        queues: Iterable[Queue] = (),
        schedules: Iterable[Cron] = (),
        prune_schedules: bool = True,
        engine_options: Mapping[str, Any] | None = None,
        allowed: Iterable[str] | None = None,
        aliases: Mapping[str, str] | None = None,
        max_kwargs_bytes: int | None = MAX_KWARGS_BYTES_DEFAULT,
        lock_timeout: float | None = LOCK_TIMEOUT_DEFAULT,
        statement_timeout: float | None = STATEMENT_TIMEOUT_DEFAULT,
    ) -> None:
        if dsn is not None and engine is not None:
            raise ChancyError("pass either dsn= or engine=, not both")
        self.allowed = AllowedFunctions.of(allowed, aliases=aliases)
        self.max_kwargs_bytes = _byte_limit(max_kwargs_bytes)
        self.timeouts = Timeouts(lock=lock_timeout, statement=statement_timeout)
        self.queues: tuple[Queue, ...] = tuple(queues)
        self.schedules: tuple[Cron, ...] = tuple(schedules)
        if not all(isinstance(cron, Cron) for cron in self.schedules):
            raise ChancyError("schedules= takes Cron objects: Cron('0 * * * *', job)")
        scheduled = [cron.name for cron in self.schedules]
        if twice := sorted({name for name in scheduled if scheduled.count(name) > 1}):
            raise ChancyError(f"schedules {twice} are given more than once; give each a name=")
        if not isinstance(prune_schedules, bool):
            raise ChancyError(f"prune_schedules= takes True or False, not {prune_schedules!r}")
        self.prune_schedules = prune_schedules
        names = [queue.name for queue in self.queues]
        if duplicates := sorted({name for name in names if names.count(name) > 1}):
            raise InvalidQueueError(f"queues {duplicates} are given more than once")
        # Checked now, so a DSN that could never connect fails where it is given.
        self._dsn = resolve_url(dsn) if dsn is not None else None
        self._engine = engine
        self._owns_engine = engine is None
        self._engine_options = dict(engine_options or {})
        # The limits chancy set on its own connections (none on an engine it was given),
        # named by the messages of timeout errors; a push in the application's
        # transaction always runs with them (local_timeouts).
        own = self.timeouts if self._owns_engine else None
        self._pushes = PushRepository(timeouts=own)
        self._pushes_in_transaction = PushRepository(timeouts=self.timeouts)
        self._jobs = JobRepository(timeouts=own)
        self._maintenance = MaintenanceRepository(timeouts=own)
        self._queues = QueueRepository(timeouts=own)
        self._declared = False
        self._listener: Listener | None = None
        self._wake_ups: WakeUps | None = None
        self._group_commit = GroupCommit(self._push_grouped)
        self._workflows = WorkflowClient(self)
        # The connection the grouped pushes run on, one statement at a time, checked out
        # on the first and kept until close (when the engine's pool can spare it).
        self._push_connection: tuple[HeldConnection, asyncio.AbstractEventLoop] | None = None
        self._closing = False

    def __repr__(self) -> str:
        where = describe(self._engine.url) if self._engine is not None else "not open"
        return f"<Chancy {where} queues={[queue.name for queue in self.queues]}>"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the engine (unless one was given) and check that the server answers."""
        self._closing = False
        if self._engine is None:
            self._engine = create_engine(
                resolve_url(self._dsn), timeouts=self.timeouts, **self._engine_options
            )
        connect_args = self._engine_options.get("connect_args")
        await check_reachable(self._engine, secrets=secrets_of(self._engine.url, connect_args))

    async def close(self) -> None:
        """Dispose of the engine if chancy created it; an engine passed in stays usable.
        Pushes queued for a grouped statement are sent first; wake-ups of pushes that
        commit from then on are dropped (the workers' polling finds their jobs)."""
        self._closing = True  # pushes from now on run on the pool: none is kept
        await self._group_commit.close()
        if self._push_connection is not None:
            held, self._push_connection = self._push_connection[0], None
            with contextlib.suppress(Exception):  # another loop's: it cannot be reached
                await held.close()
        # Closed here and kept until the end, so a push that completes meanwhile (in
        # another task) sends nothing on an engine about to be disposed of.
        if self._engine is not None:
            await self.wake_ups.close()
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._owns_engine and self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        self._wake_ups = None

    def replica(self) -> Chancy:
        """A Chancy configured as this one (its database, queues, schedules, allowed
        functions, limits and timeouts) with connections of its own, for another event
        loop: asyncio connections belong to the loop that opened them. An engine the
        application gave is twinned (:func:`~chancy.database.engine.twin_engine`), and
        the replica disposes of its twin when closed; this Chancy is left as it is."""
        engine = twin_engine(self._engine) if not self._owns_engine and self._engine else None
        replica = Chancy(
            None if engine is not None else self._dsn,
            engine=engine,
            queues=self.queues,
            schedules=self.schedules,
            prune_schedules=self.prune_schedules,
            engine_options=self._engine_options,
            allowed=self.allowed.patterns,
            max_kwargs_bytes=self.max_kwargs_bytes,
            lock_timeout=self.timeouts.lock,
            statement_timeout=self.timeouts.statement,
        )
        replica._owns_engine = True
        return replica

    @property
    def engine(self) -> AsyncEngine:
        """The engine chancy runs on."""
        if self._engine is None:
            raise ChancyError("Chancy is not open; use `async with Chancy(...) as chancy:`")
        return self._engine

    async def migrate(self, *, revision: str = "head", sql: bool = False) -> str | None:
        """Upgrade chancy's schema to ``revision`` (default: the newest).

        Safe to call from many processes at once: they take turns. With ``sql=True`` the
        database is not touched; the DDL is returned for a DBA to review and apply.
        Migrations run without chancy's ``lock_timeout`` and ``statement_timeout``, and as
        a role that may change the schema (else :class:`PermissionDeniedError`).
        """
        if sql:
            return migrations.sql(revision)
        with translated("migrating chancy's schema", None, denied_hint=_MIGRATION_DENIED_HINT):
            async with self.engine.begin() as connection:
                await connection.execute(_NO_TIMEOUTS_FOR_MIGRATIONS)
                await migrations.upgrade(connection, revision)
        return None

    @overload
    async def push(
        self, job: Job, /, *, session: Transaction | None = None, declare: bool = False
    ) -> Reference: ...

    @overload
    async def push(
        self,
        queue: str,
        job: Job,
        /,
        *,
        session: Transaction | None = None,
        declare: bool = False,
    ) -> Reference: ...

    async def push(
        self,
        queue: str | Job,
        job: Job | None = None,
        /,
        *,
        session: Transaction | None = None,
        declare: bool = False,
    ) -> Reference:
        """Store a job in ``queue`` (or, as ``push(job)``, in ``job.queue``).

        With ``session`` (an ``AsyncSession`` or ``AsyncConnection``), the job is written
        in that transaction and chancy commits nothing: it exists if the transaction
        commits and never did if it rolls back; workers are woken once it commits (see
        the README's "How a push wakes a worker"). Without it, the push commits on its
        own, and wakes the workers right after.

        The queue must be declared (``default`` always is, and so are the queues given to
        ``Chancy(queues=...)``), else :class:`~chancy.errors.UnknownQueueError` says so,
        with the closest declared name; ``declare=True`` declares it.
        """
        (reference,) = await self._push(one_job(queue, job), session, declare)
        return reference

    @overload
    async def push_many(
        self, jobs: Sequence[Job], /, *, session: Transaction | None = None, declare: bool = False
    ) -> list[Reference]: ...

    @overload
    async def push_many(
        self,
        queue: str,
        jobs: Sequence[Job],
        /,
        *,
        session: Transaction | None = None,
        declare: bool = False,
    ) -> list[Reference]: ...

    async def push_many(
        self,
        queue: str | Sequence[Job],
        jobs: Sequence[Job] | None = None,
        /,
        *,
        session: Transaction | None = None,
        declare: bool = False,
    ) -> list[Reference]:
        """Store many jobs with one statement; one :class:`Reference` per job, in order.

        ``push_many(queue, jobs)`` puts all of them in ``queue``; ``push_many(jobs)`` uses
        each job's own queue. ``session`` and ``declare`` work as for :meth:`push`.
        """
        return await self._push(many_jobs(queue, jobs), session, declare)

    async def _ready_to_push(self, batch: Sequence[Job], declare: bool) -> None:
        """Check ``batch``'s kwargs sizes and declare the configured queues (once), and
        with ``declare``, the batch's queues."""
        check_kwargs_size(batch, self.max_kwargs_bytes)
        if not self._declared:
            await self.declare_configured()
        if declare:
            async with hot_connection(self.engine) as connection:
                names = sorted({job.queue for job in batch})
                await self._queues.declare_many(connection, names)

    async def _push(
        self, batch: list[Job], session: Transaction | None, declare: bool
    ) -> list[Reference]:
        await self._ready_to_push(batch, declare)
        if session is None:
            if len(batch) == 1:
                return [await self._group_commit.push(batch[0])]
            return await self._push_alone(batch)
        # A session's commit is seen (after_commit); a connection's is not, so its push
        # announces itself, at its commit.
        sees_commit = isinstance(session, AsyncSession) and on_engine(session.sync_session)
        async with local_timeouts(session, self.timeouts):
            pushed = await self._pushes_in_transaction.insert_many(
                session, batch, announce=not sees_commit
            )
        if isinstance(session, AsyncSession) and sees_commit:
            wake_after_commit(session.sync_session, self.wake_ups, pushed.ready_queues)
        return pushed.references

    async def _push_on_own_connection(self, batch: Sequence[Job]) -> Pushed:
        """Push ``batch`` in a transaction of chancy's own. Two pushes whose unique keys
        overlap in different orders may deadlock (each waits for a key the other
        inserted first); the one PostgreSQL picks stored nothing (its transaction is
        rolled back), so it runs again a little later, and then finds the other's jobs
        holding them."""
        for attempt in range(1, _DEADLOCK_RETRIES + 1):
            try:
                return await retry_once(
                    lambda: hot_connection(self.engine),
                    lambda connection: self._pushes.insert_many(connection, batch, announce=False),
                )
            except DBAPIError as exc:
                if sqlstate_of(exc) != _DEADLOCK_DETECTED or attempt == _DEADLOCK_RETRIES:
                    raise
                log.info("a push deadlocked on unique keys with another; pushing again")
                # Meanwhile the other's statement ends; at once, this one could cross it
                # again (each inserting the keys the other holds, from opposite ends).
                await asyncio.sleep(random.uniform(0.05, 0.2) * attempt)
        raise AssertionError("unreachable")

    async def _push_alone(self, batch: Sequence[Job]) -> list[Reference]:
        """Push ``batch`` in a transaction of its own, on a connection of the pool, and
        wake its queues' workers once it committed."""
        pushed = await self._push_on_own_connection(batch)
        self.wake_ups.wake(pushed.ready_queues)  # committed: the statement was its own
        return pushed.references

    async def _push_grouped(self, batch: Sequence[Job]) -> list[Reference]:
        """:meth:`_push_alone` for the group commit's statements (one in flight at a
        time), on the connection it keeps: a pool checkout and return cost more Python
        than the push itself."""
        held = self._held_for_pushes()
        # Busy: a statement stuck on a lock (group_commit's STALLED_AFTER); this batch goes
        # on the pool, unless the pool can lend nothing now: then it waits its turn.
        if held is None or (held.busy and lends_at_once(self.engine)):
            return await self._push_alone(batch)
        try:
            pushed = await held.run(
                lambda connection: self._pushes.insert_many(connection, batch, announce=False)
            )
        except DBAPIError as exc:
            if sqlstate_of(exc) != _DEADLOCK_DETECTED:
                raise
            return await self._push_alone(batch)  # it stored nothing: again, with retries
        self.wake_ups.wake(pushed.ready_queues)  # committed: the statement was its own
        return pushed.references

    def _held_for_pushes(self) -> HeldConnection | None:
        """The connection kept for grouped pushes (made on first use), or None where the
        pool cannot spare one or the push comes from another event loop than the first."""
        loop = asyncio.get_running_loop()
        if self._push_connection is None:
            if self._closing or not can_spare_connection(self.engine):
                return None
            self._push_connection = (HeldConnection(self.engine), loop)
        held, held_loop = self._push_connection
        return held if held_loop is loop else None

    @property
    def wake_ups(self) -> WakeUps:
        """The coalescer that wakes idle workers after pushes commit (see
        :mod:`chancy.wakeups`)."""
        if self._wake_ups is None:
            # A connection kept for the sends when the pool can spare it besides the
            # grouped pushes' (many a second under load, each a checkout otherwise).
            spare = not self._closing and can_spare_connection(self.engine, kept=1)
            held = HeldConnection(self.engine) if spare else None
            self._wake_ups = WakeUps(self.engine, held=held)
        return self._wake_ups

    async def declare_configured(self) -> None:
        """Declare the queues given to ``Chancy(queues=...)``, with their cluster-wide
        limits (done once, before the first push and when a worker starts)."""
        if self.queues:
            await retry_once(
                lambda: hot_connection(self.engine),
                lambda connection: self._queues.declare_many(connection, self.queues),
                repeatable=True,  # upserts of the queues' rows
            )
        self._declared = True

    async def declare(self, queue: Queue | str) -> None:
        """Declare ``queue``: a :class:`Queue` states its ``global_concurrency`` and
        ``rate_limit`` (None: no limit), which are stored and honoured by every worker,
        who pick a change up within a second; a name (or a Queue with
        ``declare_limits=False``) makes sure the queue exists and never changes its
        limits (a new queue has none)."""
        async with hot_connection(self.engine) as connection:
            await self._queues.declare_many(connection, [queue])

    async def list_queues(self) -> list[QueueInfo]:
        """Every declared queue with its state and limits, by name."""
        return await retry_once(self.engine.connect, self._queues.list_all, repeatable=True)

    async def pause_queue(self, name: str, *, resume_at: datetime | None = None) -> None:
        """Stop every worker from starting jobs of queue ``name`` (running ones go on),
        until :meth:`resume_queue` or, if given, ``resume_at``. Workers hear of it at
        once; the claim itself checks it, so none can miss it."""
        await self._pause(name, paused=True, resume_at=resume_at)

    async def resume_queue(self, name: str) -> None:
        """Let workers start jobs of queue ``name`` again, waking them at once."""
        await self._pause(name, paused=False, resume_at=None)

    async def _pause(self, name: str, *, paused: bool, resume_at: datetime | None) -> None:
        if resume_at is not None and (resume_at.tzinfo is None or resume_at.utcoffset() is None):
            raise InvalidQueueError("resume_at must be an aware datetime (with a time zone)")
        async with hot_connection(self.engine) as connection:
            if not await self._queues.pause(connection, name, paused=paused, resume_at=resume_at):
                raise await self._unknown_queue(connection, name)

    async def delete_queue(self, name: str, *, force: bool = False) -> int:
        """Delete the declared queue ``name``; how many of its jobs were deleted with it.

        A queue that still has jobs (finished ones too: they are its history) is kept,
        with :class:`~chancy.errors.QueueNotEmptyError` counting them by state, unless
        ``force``: then its jobs are deleted with it. Never while one of its jobs runs
        (cancel it, or pause the queue and let it finish). Pushes to it wait for the
        deletion, then fail with :class:`~chancy.errors.UnknownQueueError`. The queue
        ``default`` is always declared, and is never deleted."""
        if name == QUEUE_DEFAULT:
            raise InvalidQueueError(f"the queue {QUEUE_DEFAULT!r} is always declared; it is kept")
        async with self.engine.begin() as connection:
            states = await self._queues.lock_for_delete(connection, name)
            if states is None:
                raise await self._unknown_queue(connection, name)
            if states and (not force or states.get(JobState.RUNNING)):
                raise _queue_not_empty(name, states, force=force)
            return await self._queues.delete(connection, name)

    async def _unknown_queue(self, connection: HotExecutable, name: str) -> UnknownQueueError:
        known = await self._queues.names(connection)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return UnknownQueueError(f"queue {name!r} is not declared{hint}")

    async def get_job(self, reference: Reference | int) -> QueuedJob | None:
        """The job as stored now, or None if no job has that id. A row that is not a job
        chancy could have written (an unknown state) raises :class:`CorruptJobError`."""
        return await retry_once(
            self.engine.connect,
            lambda connection: self._jobs.get(connection, int(reference)),
            repeatable=True,
        )

    async def wait_for_job(
        self,
        reference: Reference | int,
        *,
        timeout: float | None = None,
        poll_interval: float = WAIT_POLL_INTERVAL_DEFAULT,
    ) -> QueuedJob:
        """Wait until the job is finished (succeeded, failed or cancelled) and return it.

        Woken by the ``finished`` notification as the outcome commits; it also looks
        every ``poll_interval`` seconds, in case a notification was lost. Raises
        ``TimeoutError`` after ``timeout`` seconds, and :class:`ChancyError` for an
        unknown job.
        """
        changed = asyncio.Event()
        job_id = int(reference)

        def on_event(event: Event) -> None:
            ids = event.get("ids") or ()
            if event.get("event") == EventKind.RECONNECTED or job_id in ids:
                changed.set()

        unsubscribe = (await self.listener()).subscribe(on_event)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    job = await self.get_job(job_id)
                    if job is None:
                        raise ChancyError(f"there is no job {job_id}")
                    if job.state in FINISHED_STATES:
                        return job
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), timeout=poll_interval)
                    changed.clear()
        finally:
            unsubscribe()

    async def cancel_job(self, reference: Reference | int) -> QueuedJob | None:
        """Cancel a job that has not finished: a waiting one never runs, a running one is
        interrupted where its executor can (see each executor) and ends ``cancelled``
        either way; its worker's late outcome is not written. Returns the job as
        cancelled, or None if it had already finished (or does not exist)."""
        async with self.engine.begin() as connection:
            return await self._jobs.cancel(connection, int(reference))

    async def retry_job(self, reference: Reference | int) -> QueuedJob | None:
        """Put a failed or cancelled job back in its queue, ready now, with one more
        attempt allowed. Returns it, or None if it was not failed or cancelled.

        A job whose unique key an unfinished job holds stays as it is:
        :class:`~chancy.errors.UniqueKeyHeldError` names that job (``holder_id``)."""
        job_id = int(reference)
        try:
            async with self.engine.begin() as connection:
                return await self._jobs.retry(connection, job_id)
        except UniqueKeyHeldError as exc:
            if exc.holder_id is not None:
                raise
        # A job with the key was pushed while this one was retried: now it is seen, named.
        async with self.engine.begin() as connection:
            return await self._jobs.retry(connection, job_id)

    async def retry_jobs(
        self, *, state: JobState | str = JobState.FAILED, queue: str | None = None
    ) -> RetriedJobs:
        """Put every job in ``state`` (``failed``, the default, or ``cancelled``) back in
        its queue, of ``queue`` or of every queue, as :meth:`retry_job` does for one.
        Works in batches, so it never holds many locks at once.

        Returns how many came back, as a :class:`RetriedJobs` (an ``int``) whose
        ``skipped`` maps each job left as it was, because an unfinished job holds its
        unique key, to that job. Of several jobs with one key, the newest comes back and
        the others are skipped for it. A skipped job never stops the others."""
        state = JobState(state)
        retried, skipped, after = 0, dict[int, int](), 0
        async with hot_connection(self.engine) as connection:
            while True:
                try:
                    batch = await self._maintenance.retry_many(
                        connection, state, queue, after=after
                    )
                except UniqueKeyHeldError:
                    # A job with one of the batch's keys was pushed meanwhile and nothing
                    # changed: the batch again sees it as the holder.
                    batch = await self._maintenance.retry_many(
                        connection, state, queue, after=after
                    )
                if batch.last_id is None:
                    return RetriedJobs(retried, skipped)
                retried += batch.retried
                skipped.update(batch.skipped)
                after = batch.last_id

    async def push_workflow(
        self, workflow: Workflow, /, *, session: Transaction | None = None, declare: bool = False
    ) -> WorkflowReference:
        """Store ``workflow``: its steps and their dependencies, in one statement. Steps
        without parents are ready at once; the others are ``blocked`` until their parents
        finish (see :mod:`chancy.workflow`).

        ``session`` and ``declare`` work as for :meth:`push`: in the application's
        transaction the workflow exists if it commits and never did if it rolls back.
        Returns the workflow's :class:`~chancy.workflow.WorkflowReference` (its id, and
        each step's job id). Raises :class:`~chancy.errors.InvalidWorkflowError` for a
        workflow without steps, :class:`~chancy.errors.UnknownQueueError` for a step in an
        undeclared queue, :class:`~chancy.errors.UniqueKeyHeldError` for a step whose
        unique key an unfinished job holds; nothing is stored then."""
        return await self._workflows.push(workflow, session, declare)

    async def get_workflow(self, reference: WorkflowReference | int) -> WorkflowState:
        """The workflow as stored now: its state and each step's job by step name.
        Raises :class:`~chancy.errors.UnknownWorkflowError` for an unknown id."""
        return await self._workflows.get(reference)

    async def wait_for_workflow(
        self,
        reference: WorkflowReference | int,
        *,
        timeout: float | None = None,
        poll_interval: float = WAIT_POLL_INTERVAL_DEFAULT,
    ) -> WorkflowState:
        """Wait until every step of the workflow finished and return its state. Woken by
        the ``finished`` notifications of its steps; it also looks every
        ``poll_interval`` seconds. Raises ``TimeoutError`` after ``timeout`` seconds."""
        return await self._workflows.wait(reference, timeout, poll_interval)

    async def cancel_workflow(self, reference: WorkflowReference | int) -> int:
        """Cancel every unfinished step of the workflow (running ones are interrupted, as
        :meth:`cancel_job` does); returns how many steps were cancelled."""
        return await self._workflows.cancel(reference)

    async def retry_workflow(self, reference: WorkflowReference | int) -> int:
        """Put the workflow's failed and cancelled steps back (and so the steps cancelled
        because of them), each with one more attempt allowed; succeeded steps keep their
        results and do not run again. Returns how many steps were put back."""
        return await self._workflows.retry(reference)

    async def listener(self) -> Listener:
        """The process's LISTEN connection on chancy's events, started on first use."""
        if self._listener is None:
            self._listener = Listener(self.engine)
            await self._listener.start()
        return self._listener


def _queue_not_empty(name: str, states: Mapping[str, int], *, force: bool) -> QueueNotEmptyError:
    total = sum(states.values())
    counts = ", ".join(f"{count} {state}" for state, count in states.items())
    have = f"queue {name!r} has {total} {'job' if total == 1 else 'jobs'} ({counts})"
    if force:
        return QueueNotEmptyError(
            f"{have}: it is not deleted while a job of it runs; cancel the running jobs, or "
            "pause the queue and let them finish, then delete it"
        )
    return QueueNotEmptyError(
        f"{have}: delete them with the queue with force=True (`chancy queue delete "
        f"{name} --force`), or let them finish and delete them first"
    )


def _byte_limit(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(
            f"max_kwargs_bytes={value!r}: use a positive number of bytes, or None for no limit"
        )
    return value
