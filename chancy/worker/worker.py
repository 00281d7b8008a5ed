"""The worker: runs the jobs of its queues until it is stopped.

::

    async with Chancy(dsn, queues=[Queue(name="default", concurrency=10)]) as chancy:
        async with Worker(chancy) as worker:
            ...                      # jobs run until the block ends
            await worker.stop()      # or stop explicitly: graceful drain

Inside, each queue has a :class:`~chancy.worker.producer.Producer`; outcomes go through
one :class:`~chancy.worker.completer.Completer`; the producers' claims and the
completer's writes each run on a connection the worker holds
(:class:`~chancy.worker.held_connection.HeldConnection`); a
:class:`~chancy.worker.heartbeat.Heartbeat` extends the leases of running jobs and a
:class:`~chancy.services.leader.Leadership` the worker's lease as the leader, both in a
thread of their own that no job can block (:mod:`chancy.worker.lease_keeper`); a
:class:`~chancy.worker.queue_settings.QueueSettingsWatcher` keeps the queues' settings;
the cluster's leader also runs the services of :mod:`chancy.services` (promoter, rescuer,
pruner, cron). Their pace is set by one :class:`~chancy.worker.settings.WorkerSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import secrets
import signal
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from chancy import migrations
from chancy.allowed import AllowedFunctions, check_runnable
from chancy.control import JobControl
from chancy.database.engine import hot_connection, retry_once
from chancy.errors import ChancyError, SchemaError
from chancy.events import Event, EventKind
from chancy.executor import executor_for
from chancy.executor.base import Executor, RemoteJobError
from chancy.jobs import QueuedJob
from chancy.queue import Queue
from chancy.repository import (
    Attempt,
    ClaimRepository,
    Outcome,
    QueueRepository,
    WorkerPresence,
    WorkerRepository,
)
from chancy.repository.runner import translated
from chancy.services import CronService, LeaderService, Promoter, Pruner, Rescuer, WorkerPruner
from chancy.states import JobState
from chancy.worker import outcomes
from chancy.worker.completer import Completer
from chancy.worker.held_connection import HeldConnection
from chancy.worker.lease_keeper import LeaseKeeper
from chancy.worker.producer import Producer
from chancy.worker.queue_settings import QueueSettingsWatcher
from chancy.worker.reports import JobReports
from chancy.worker.settings import WORKER_SETTINGS_DEFAULT, WorkerSettings

if TYPE_CHECKING:
    from chancy.app import Chancy

__all__ = ["Worker", "default_worker_id"]

log = logging.getLogger("chancy.worker")

# Outcomes waiting to be written beyond which a worker claims nothing more.
OUTCOME_BACKLOG_MAX = 5000
SERVICE_STOP_TIMEOUT = 10.0
HARD_STOP_GRACE = 5.0
Interruption = Literal["lost", "shutdown"]


class Worker:
    """Runs the jobs of ``queues`` (default: the queues given to ``Chancy``).

    ``settings``: its leases, its graceful stop (``shutdown_timeout``), the pace of its
    services and the retention of finished jobs (see :class:`WorkerSettings`; every one
    has a default). ``allowed``: the patterns of the functions it may run, in place of
    ``Chancy(allowed=...)`` (see :mod:`chancy.allowed`); a job whose function they do not
    allow, or whose row is corrupt, fails at once without a retry. ``aliases``: old
    function names to new ones, added to ``Chancy(aliases=...)``.
    """

    def __init__(
        self,
        chancy: Chancy,
        *,
        queues: Iterable[Queue] | None = None,
        worker_id: str | None = None,
        allowed: Iterable[str] | None = None,
        aliases: Mapping[str, str] | None = None,
        settings: WorkerSettings = WORKER_SETTINGS_DEFAULT,
    ) -> None:
        self.chancy = chancy
        patterns = chancy.allowed
        if allowed is not None:  # in place of the app's patterns, keeping its aliases
            patterns = AllowedFunctions.of(allowed, aliases=dict(chancy.allowed.aliases))
        self.allowed = patterns.with_aliases(aliases) if aliases else patterns
        self.queues = tuple(chancy.queues if queues is None else queues)
        if not self.queues:
            raise ChancyError(
                "the worker has no queues; pass queues=[Queue(name=...)] to Chancy or Worker"
            )
        self.worker_id = worker_id or default_worker_id()
        self.settings = settings
        self._claims = ClaimRepository()
        self._queue_repository = QueueRepository()
        self._workers = WorkerRepository()
        self._queue_settings: QueueSettingsWatcher | None = None
        self._producers: dict[str, Producer] = {}
        self._interrupted: dict[int, Interruption] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._signal_tasks: list[asyncio.Future[None]] = []
        self._unsubscribe: Any = None
        self._completer: Completer | None = None
        self._reports: JobReports | None = None
        self._connections: tuple[HeldConnection, ...] = ()
        self._lease_keeper: LeaseKeeper | None = None
        self._stopping = False
        self._not_importable: set[str] = set()
        self.stopped = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} queues={[q.name for q in self.queues]}>"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def running(self) -> dict[int, QueuedJob]:
        """The jobs running in this worker now, by id."""
        return {i: job for p in self._producers.values() for i, (job, _t) in p.running.items()}

    @property
    def is_leader(self) -> bool:
        return self._lease_keeper is not None and self._lease_keeper.leadership.is_leader

    async def start(self) -> None:
        """Check the schema, declare the worker's queues (with their cluster-wide limits),
        then start claiming and running jobs."""
        await self._check_schema()
        engine = self.chancy.engine
        # Start-up statements run again on another connection if theirs died (the server
        # ended it while it sat idle, or under the statement): each is safe to repeat.
        await retry_once(
            lambda: hot_connection(engine),
            lambda connection: self._queue_repository.declare_many(connection, self.queues),
            repeatable=True,  # an upsert of the queues' rows
        )
        self._queue_settings = QueueSettingsWatcher(
            engine,
            [queue.name for queue in self.queues],
            on_change=self._wake,
            interval=self.settings.queue_refresh_interval,
        )
        await self._queue_settings.load()
        listener = await self.chancy.listener()
        self._unsubscribe = listener.subscribe(self._on_event)
        # Two held connections: the claims' and the outcomes', so that a batch of outcomes
        # is written while the next claim runs (on one, each waited for the other).
        self._connections = (HeldConnection(engine), HeldConnection(engine))
        self._completer = Completer(engine, connection=self._connections[1])
        self._completer.start()
        self._reports = JobReports(engine, self._is_running)
        for queue in self.queues:
            executor = executor_for(queue, allowed=self.allowed)
            executor.reporter = self._reports
            await executor.start()
            producer = Producer(queue, executor, self._claim, self._run_job)
            self._producers[queue.name] = producer
            producer.start()
        await self._start_services()
        log.info("worker %s started on queues %s", self.worker_id, [q.name for q in self.queues])
        self._log_allowed()

    @property
    def presence(self) -> WorkerPresence:
        """What this worker's row in ``chancy_workers`` says of it."""
        return WorkerPresence(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(queue.name for queue in self.queues),
            concurrency=sum(queue.concurrency for queue in self.queues),
        )

    async def _start_services(self) -> None:
        """Write the worker's row, start the heartbeat (which keeps it) and the election
        (in their thread), the queue settings' reload, and the services the leader runs
        (the schedules are stored first)."""
        engine, settings, completer = self.chancy.engine, self.settings, self._completer
        assert completer is not None
        assert self._queue_settings is not None
        producers = tuple(self._producers.values())
        presence = self.presence
        await retry_once(
            lambda: hot_connection(engine),
            lambda connection: self._workers.beat(connection, presence, settings.lease_seconds),
            repeatable=True,  # an upsert of the worker's row
        )
        self._lease_keeper = keeper = LeaseKeeper(
            engine,
            self.worker_id,
            lease_seconds=settings.lease_seconds,
            leader_ttl=settings.leader_ttl,
            running=lambda: [a for p in producers for a in p.attempts],
            unwritten=lambda: completer.unwritten,
            lost=functools.partial(self._interrupt, reason="lost"),
            presence=presence,
        )
        leadership = keeper.leadership
        cron = CronService(
            engine,
            leadership,
            self.chancy.schedules,
            prune=self.chancy.prune_schedules,
            interval=settings.cron_interval,
        )
        # The first election (on the lease thread's new connection) and the storing of
        # the schedules (on the engine's) go on side by side.
        try:
            await asyncio.gather(keeper.start(), cron.store())
        except BaseException:
            await keeper.stop()  # a worker that failed to start neither leads nor holds
            raise
        services: tuple[LeaderService, ...] = (
            Promoter(
                engine, leadership, interval=settings.promote_interval, batch=settings.promote_batch
            ),
            Rescuer(
                engine, leadership, interval=settings.rescue_interval, batch=settings.rescue_batch
            ),
            Pruner(
                engine,
                leadership,
                retention=settings.retention,
                interval=settings.prune_interval,
                batch=settings.prune_batch,
            ),
            cron,
            WorkerPruner(engine, leadership, interval=settings.prune_interval),
        )
        for name, coroutine in (
            ("queue settings", self._queue_settings.run()),
            *((service.name, service.run()) for service in services),
        ):
            self._tasks.append(asyncio.create_task(coroutine, name=f"chancy-{name}"))

    def _log_allowed(self) -> None:
        """Say once, at start, which functions this worker runs: a warning if any."""
        if self.allowed.unrestricted:
            log.warning(
                "worker %s runs any importable function a job names: whoever can write "
                "chancy's jobs table can run code here. Restrict it with "
                "Chancy(allowed=['myapp.tasks.*']) or `chancy worker --allow 'myapp.tasks.*'`",
                self.worker_id,
            )
        else:
            log.info("worker %s runs only %s", self.worker_id, list(self.allowed.patterns))

    async def stop(self, *, timeout: float | None = None) -> None:
        """Stop gracefully: claim nothing more, give running jobs ``timeout`` seconds
        (default ``shutdown_timeout``) to finish, then interrupt the rest and give them
        back (``pending`` at once), write every outcome, and resign leadership. A plain
        function running in a thread cannot be interrupted: the stop waits for it to end
        (renewing its lease) and writes its outcome, however long that takes."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        try:
            await self._drain(self.settings.shutdown_timeout if timeout is None else timeout)
        finally:
            await self._shut_down_services()
            self.stopped.set()
            log.info("worker %s stopped", self.worker_id)

    async def run_until_signalled(self) -> None:
        """Run until SIGTERM or SIGINT: the first stops gracefully, a second at once:
        what can be interrupted is given back, and this returns within
        ``HARD_STOP_GRACE`` seconds even while jobs still run in threads (then in
        :attr:`running`: their leases are no longer renewed once the loop ends; ``chancy
        worker`` exits the process, which ends them)."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.warning("signal received: stopping gracefully (a second Ctrl-C stops now)")
                self._signal_tasks.append(asyncio.ensure_future(self._stop_on_signal(None)))
            elif signals == 2:
                log.warning("second signal received: stopping now")
                self._signal_tasks.append(asyncio.ensure_future(self._stop_on_signal(0.0)))
            else:
                log.warning("signal received again: exiting at once")
                self.stopped.set()

        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, on_signal)
        try:
            await self.start()
            await self.stopped.wait()
        finally:
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(number)

    async def _stop_on_signal(self, timeout: float | None) -> None:
        if timeout != 0.0:
            await self.stop(timeout=timeout)
            return
        # Stopping hard must end the process even if cleanup is stuck (a dead database):
        # jobs not given back by then are rescued once their leases expire.
        asyncio.get_running_loop().call_later(HARD_STOP_GRACE, self.stopped.set)
        in_threads = set(self._interrupt_all("shutdown"))
        if not in_threads:
            await self.stop(timeout=0.0)
            return
        # Jobs in threads cannot be interrupted and are not given back (they still run):
        # write what the others left (their releases), then return without waiting for
        # the threads; `chancy worker` exits the process, which ends them.
        others = [
            task
            for p in self._producers.values()
            for job_id, (_j, task) in p.running.items()
            if job_id not in in_threads
        ]
        if others:
            await asyncio.wait(others, timeout=HARD_STOP_GRACE)
        if self._completer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(HARD_STOP_GRACE):
                    await self._completer.stop()
        await self._close_connections()
        self.stopped.set()

    async def _check_schema(self) -> None:
        with translated("checking chancy's schema", None):
            current = await retry_once(
                self.chancy.engine.connect, migrations.current, repeatable=True
            )
        if current != migrations.head():
            raise SchemaError(
                f"{_schema_state(current)}, this chancy needs {migrations.head()}: run "
                "`await chancy.migrate()` or `chancy migrate`"
            )

    async def _claim(self, queue: str, limit: int) -> list[QueuedJob]:
        if self._completer is not None and self._completer.backlog >= OUTCOME_BACKLOG_MAX:
            # The database is not keeping up with the outcomes: claim nothing until it has
            # written half of them (waiting at most a second, so a stop is never held up).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._completer.wait_for_backlog_below(OUTCOME_BACKLOG_MAX // 2), timeout=1.0
                )
            if self._completer.backlog >= OUTCOME_BACKLOG_MAX:
                return []
        if self._stopping:
            return []
        assert self._queue_settings is not None
        info = self._queue_settings.settings.get(queue)
        limited = info is None or info.limited or info.paused
        return await self._connections[0].run(
            lambda connection: self._claims.claim_available(
                connection,
                queue,
                limit,
                self.worker_id,
                lease_seconds=self.settings.lease_seconds,
                limited=limited,
                durable=self.settings.durable_claims,
            )
        )

    def _wake(self, queue: str) -> None:
        """Jobs of ``queue`` may be claimable now (its settings changed): claim at once."""
        producer = self._producers.get(queue)
        if producer is not None:
            producer.notify()

    async def _run_job(self, job: QueuedJob, executor: Executor) -> None:
        assert self._completer is not None
        try:
            check_runnable(job, self.allowed)  # the row is untrusted: before any import
            result = await executor.run(job)
        except asyncio.CancelledError as exc:
            if self._after_interruption(job):
                return
            self._completer.add(await self._reported(job, self._outcome(job, exc)))
            return
        except Exception as exc:
            outcome = self._outcome(job, exc)
            if outcomes.is_refusal(exc):
                log.warning("job %d refused, and failed: %s", job.id, exc)
            elif outcomes.is_not_importable(exc):
                self._log_not_importable(job, exc, outcome)
            elif isinstance(exc, JobControl):
                shown = outcomes.loggable(exc)  # the job's own words: a reason may be anything
                log.info("job %d (%s) attempt %d: %s", job.id, job.func, job.attempts, shown)
            else:
                log.info("job %d (%s) attempt %d failed: %r", job.id, job.func, job.attempts, exc)
            self._completer.add(await self._reported(job, outcome))
            return
        self._completer.add(await self._reported(job, self._outcome(job, result, succeeded=True)))

    async def _reported(self, job: QueuedJob, outcome: Outcome) -> Outcome:
        """``outcome``, once what ``job``'s context reported is written (its latest
        progress: the outcome would fence it off), marked if the job completed itself in
        its transaction. Jobs without a context pass through at the cost of a lookup."""
        reports = self._reports
        if reports is None or not reports.has(job.id):
            return outcome
        completing = reports.is_completing(job.id)
        await reports.end(job.id)
        if not completing:
            return outcome
        return dataclasses.replace(outcome, context_completed=True)

    def _is_running(self, job_id: int, fence: int | None) -> bool:
        """Whether the attempt of ``job_id`` fenced by ``fence`` runs here now (not an
        earlier attempt of the same job); safe from any thread."""
        for producer in list(self._producers.values()):
            entry = producer.running.get(job_id)
            if entry is not None and entry[0].fence == fence:
                return True
        return False

    def _log_not_importable(self, job: QueuedJob, exc: Exception, outcome: Outcome) -> None:
        """An ERROR, with the fix, the first time this worker cannot import a function;
        INFO for the jobs of that function it defers after it; an ERROR for each job that
        fails because it was deferred too often."""
        if outcome.state is not JobState.SCHEDULED:
            error = outcome.error or {}
            message = outcomes.loggable(error.get("message", exc))
            log.error("job %d (%s) failed: %s", job.id, job.func, message)
            return
        if job.func in self._not_importable:
            log.info(
                "job %d (%s) deferred: this worker cannot import its function", job.id, job.func
            )
            return
        self._not_importable.add(job.func)
        message = exc.message if isinstance(exc, RemoteJobError) else str(exc)
        log.error(
            "job %d deferred, its attempt not used, for a worker that can import it "
            "(at most %d times, then it fails): %s (this worker runs in %s)",
            job.id,
            outcomes.DEFERRALS_MAX,
            message,
            _working_directory(),
        )

    def _outcome(self, job: QueuedJob, ended: Any, *, succeeded: bool = False) -> Outcome:
        """The outcome of ``job``'s run, which returned ``ended`` or raised it: always one,
        even when making it fails, so that every attempt ends with an outcome."""
        try:
            if succeeded:
                return outcomes.success(job, ended)
            return outcomes.failure(job, ended, worker_id=self.worker_id)
        except Exception as exc:
            log.exception("job %d: could not make the outcome of its run", job.id)
            return outcomes.unrecorded(job, exc)

    def _after_interruption(self, job: QueuedJob) -> bool:
        """Whether the run was interrupted (the job is given back, or no longer ours);
        False when the job itself raised ``CancelledError``. Re-raises a cancellation
        of the worker's own."""
        assert self._completer is not None
        if self._reports is not None:
            self._reports.forget(job.id)
        reason = self._interrupted.pop(job.id, None)
        if reason == "shutdown":
            self._completer.release(Attempt(job.id, job.fence))
        elif reason == "lost":
            log.warning("job %d was cancelled or taken over; its run was stopped", job.id)
        else:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            return False
        return True

    def _interrupt(self, job_id: int, reason: Interruption) -> bool:
        """Stop the run of ``job_id`` (for ``reason``); False when it runs a plain function
        in a thread, which cannot be stopped: a stop leaves it to end (a lost job does not
        wait: its run is abandoned, its outcome would be refused)."""
        if reason == "lost" and self._reports is not None and self._reports.is_completing(job_id):
            return True  # it completed itself in its transaction: let it end on its own
        for producer in self._producers.values():
            entry = producer.running.get(job_id)
            if entry is None or job_id in self._interrupted:
                continue
            if reason == "shutdown" and not producer.executor.interrupt(job_id):
                return False
            self._interrupted[job_id] = reason
            entry[1].cancel()
        return True

    def _interrupt_all(self, reason: Interruption) -> list[int]:
        """Interrupt every running job; returns those that cannot be (see
        :meth:`_interrupt`)."""
        return [job_id for job_id in list(self.running) if not self._interrupt(job_id, reason)]

    def _on_event(self, event: Event) -> None:
        kind = event.get("event")
        if kind == EventKind.PUSHED:
            producer = self._producers.get(str(event.get("queue")))
            if producer is not None:
                producer.notify()
        elif kind == EventKind.FINISHED:
            running = self.running  # built once per event, not once per id
            for job_id in event.get("ids") or ():
                if isinstance(job_id, int) and job_id in running:
                    self._interrupt(job_id, "lost")
        elif kind == EventKind.QUEUE_CHANGED:
            if event.get("queue") in self._producers and self._queue_settings is not None:
                self._queue_settings.changed()
        elif kind == EventKind.RECONNECTED:
            if self._queue_settings is not None:
                self._queue_settings.changed()
            for producer in self._producers.values():
                producer.notify()

    async def _drain(self, timeout: float) -> None:
        for producer in self._producers.values():
            await producer.stop_claiming()
        tasks = [task for p in self._producers.values() for _job, task in p.running.values()]
        if tasks:
            log.info(
                "waiting up to %g s for %s to finish: %s",
                timeout,
                _jobs(len(tasks), "running job"),
                self.describe_running(),
            )
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                self._give_back_unfinished(len(pending))
                await asyncio.wait(pending)

    def describe_running(self, ids: Iterable[int] | None = None) -> str:
        """``job 12 (myapp.tasks.send, running 3 s), ...``: the jobs running now (or those
        of ``ids``), for a log line."""
        now = datetime.now(UTC)
        running = self.running
        shown = []
        for job_id in sorted(running if ids is None else ids):
            job = running.get(job_id)
            if job is None:
                continue
            since = (
                ""
                if job.started_at is None
                else f", running {(now - job.started_at).total_seconds():.0f} s"
            )
            shown.append(f"job {job_id} ({job.func}{since})")
        return ", ".join(shown)

    def _give_back_unfinished(self, unfinished: int) -> None:
        """Interrupt the jobs still running and give them back; a job whose plain function
        runs in a thread cannot be interrupted, so it is waited for (its lease renewed),
        never given back while it runs: another worker would run it a second time."""
        left = self._interrupt_all("shutdown")
        if unfinished > len(left):
            log.warning(
                "giving %s back to their queues", _jobs(unfinished - len(left), "unfinished job")
            )
        if left:
            log.warning(
                "waiting for jobs whose functions run in threads, which cannot be "
                "interrupted: %s; the worker keeps their leases until they end; a second "
                "Ctrl-C exits now and leaves them to their leases: in at most %g s they "
                "run again if they have attempts left, else they fail",
                self.describe_running(left),
                self.settings.lease_seconds,
            )

    async def _shut_down_services(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=SERVICE_STOP_TIMEOUT)
            for task in stuck:
                log.error("%s did not stop within %.0f s", task.get_name(), SERVICE_STOP_TIMEOUT)
        # The leases are kept while the last outcomes are written, then given up.
        for name, step in (
            ("writing outcomes", self._completer.stop() if self._completer else None),
            (
                "stopping the lease renewals",
                self._lease_keeper.stop() if self._lease_keeper else None,
            ),
        ):
            if step is None:
                continue
            try:
                async with asyncio.timeout(SERVICE_STOP_TIMEOUT):
                    await step
            except TimeoutError:
                log.error("%s took longer than %.0f s; given up", name, SERVICE_STOP_TIMEOUT)
        await self._delete_row()
        await self._close_connections()
        for producer in self._producers.values():
            await producer.executor.stop()

    async def _delete_row(self) -> None:
        """Delete this worker's row, once its heartbeat (which would write it back) has
        stopped; if that fails, the leader prunes it once it expires."""
        if self._lease_keeper is None:
            return  # never written: the worker did not get that far
        try:
            async with asyncio.timeout(HARD_STOP_GRACE):
                async with hot_connection(self.chancy.engine) as connection:
                    await self._workers.delete(connection, self.presence)
        except Exception as exc:
            log.warning("deleting the worker's row failed (%s); it expires by itself", exc)

    async def _close_connections(self) -> None:
        """Give the held connections back to the pool, once nothing more is written."""
        for connection in self._connections:
            try:
                async with asyncio.timeout(HARD_STOP_GRACE):
                    await connection.close()
            except Exception as exc:  # a dead server: the pool discards it later
                log.warning("giving back a connection of the worker failed (%s)", exc)


def _jobs(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _schema_state(current: str | None) -> str:
    if current is None:
        return "the database has no chancy schema yet"
    return f"the database's chancy schema is at {current}"


def default_worker_id() -> str:
    """``host:pid:random``: unique per worker, and says where it ran."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _working_directory() -> str:
    try:
        return os.getcwd()
    except OSError:
        return "a directory that no longer exists"
