"""The processes executor: each job in a pool of child processes that can be killed.

A child loops over the jobs the executor sends it. Both pipes carry frames: an 8-byte
length, then a pickle. Jobs go down as pickled :class:`~chancy.jobs.QueuedJob`
values (never functions: the child imports the function by name); outcomes come back as
``(True, return_value)``, ``(False, (type_name, message, traceback_text))``, or ``(None,
control)`` for a :class:`~chancy.control.JobControl` the job raised (``Snooze``,
``Cancel``: ours, so it pickles). Before its outcome, a job's
:class:`~chancy.context.JobContext` may send frames of its own, told apart by their first
byte (a pickle's is ``0x80``): ``P`` and a pickled ``(fraction, message)`` for its
progress, ``C`` when it is about to complete itself in its transaction. The worker
writes the progress (the child holds no connection of chancy's, so no DSN crosses over).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import multiprocessing
import os
import pickle
import signal
import struct
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from chancy.allowed import UNRESTRICTED, AllowedFunctions
from chancy.control import JobControl
from chancy.executor.base import (
    EXITS,
    Executor,
    JobCrashedError,
    JobExitError,
    JobTimeoutError,
    RemoteJobError,
    call_arguments,
    describe_exception,
    resolve_allowed,
    timeout_message,
)
from chancy.jobs import QueuedJob

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess

    from chancy.context import ContextReporter

__all__ = ["ProcessExecutor"]

_HEADER = struct.Struct("!Q")
_READY = b"ready"  # the first frame a child sends, once it can take jobs
_STOPPED = "the executor stopped while the job was running, and killed its process"
_PROGRESS = b"P"
_COMPLETING = b"C"
# The least time between two progress frames of a child (the latest is always sent
# before the outcome): a job reporting in a tight loop does not flood the pipe.
_PROGRESS_FRAME_INTERVAL = 0.2


class ProcessExecutor(Executor):
    """Runs each job in one of up to ``concurrency`` child processes, reused from job to
    job and started when a run first needs them. Children come from a "forkserver" on
    Linux ("spawn" elsewhere), never from a fork of the worker and its event loop.

    What it can do that the other executors cannot: really stop a job. On timeout
    (:class:`JobTimeoutError`) or when the task awaiting :meth:`run` is cancelled, the
    child is killed with SIGKILL, wherever the job is (C code, a blocking call), and a
    fresh child takes its place for the next job. A child that dies on its own (a signal,
    ``os._exit``, the memory limit) fails its job with :class:`JobCrashedError`, which names
    the exit code or signal; the executor and the worker go on. ``memory_limit`` (bytes)
    caps each child's whole address space (``RLIMIT_AS``; Python and chancy alone take
    some 75 MB of it): an allocation past it raises ``MemoryError`` in the job, reported
    as a :class:`RemoteJobError` of that type, and the child lives on (code that cannot
    raise it, such as some C extensions, may crash the child instead).

    What it costs: kwargs and return values cross a process boundary, so they must pickle.
    Kwargs are JSON and always do; a return value that does not pickle fails the job with a
    :class:`RemoteJobError` that says so. A job's exception comes back as a
    :class:`RemoteJobError` carrying its type name, message and traceback as text, since
    the original may not pickle. A function that takes the running QueuedJob gets a copy
    (QueuedJob pickles). A killed job runs no ``finally`` blocks or ``atexit`` hooks. A new
    child imports chancy and the job's module afresh, so the first job after a kill starts
    later. Children are daemonic (a job cannot start ``multiprocessing`` processes of its
    own; ``subprocess`` works) and ignore SIGINT, so Ctrl-C reaches the worker alone.

    :meth:`stop` kills every child, idle or busy: runs in flight raise
    :class:`JobCrashedError`. Stopping twice is harmless; a run after :meth:`stop` starts
    new children.
    """

    name: ClassVar[str] = "processes"

    def __init__(
        self,
        concurrency: int,
        *,
        memory_limit: int | None = None,
        allowed: AllowedFunctions = UNRESTRICTED,
    ) -> None:
        super().__init__(concurrency, allowed=allowed)
        if memory_limit is not None and memory_limit <= 0:
            raise ValueError(
                f"memory_limit is {memory_limit}; use a positive number of bytes, or None"
            )
        self.memory_limit = memory_limit
        self._slots = asyncio.Semaphore(concurrency)
        self._children: set[_Child] = set()
        self._idle: list[_Child] = []
        self._spawning: set[asyncio.Task[_Child]] = set()
        self._closing: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        if self._spawning:
            await asyncio.wait(self._spawning)
        children, self._children = self._children, set()
        self._idle.clear()
        closing = {child.close(_STOPPED) for child in children} | self._closing
        if closing:
            # wait() rather than gather(): cancelling stop() must not cancel the closing.
            await asyncio.wait(closing)

    async def run(self, job: QueuedJob) -> Any:
        async with self._slots:
            child = await self._acquire()
            try:
                frame = await self._exchange(child, job, self.reporter)
            except BaseException:
                await self._discard(child)
                raise
            await self._release(child)
        return _unpack(frame)

    async def _exchange(
        self, child: _Child, job: QueuedJob, reporter: ContextReporter | None
    ) -> bytes:
        deadline = asyncio.timeout(job.timeout)
        try:
            async with deadline:
                return await child.exchange(job, reporter)
        except TimeoutError:
            if deadline.expired():
                raise JobTimeoutError(timeout_message(job)) from None
            raise

    async def _acquire(self) -> _Child:
        """An idle child, else a new one while the pool has room, else the next started."""
        while (child := await self._pop_idle()) is None:
            if len(self._children) + len(self._spawning) < self.concurrency:
                spawning = self._spawn()
                await asyncio.wait({spawning})
                spawning.result()  # raises when the child could not start
            else:
                await asyncio.wait(self._spawning, return_when=asyncio.FIRST_COMPLETED)
        return child

    async def _pop_idle(self) -> _Child | None:
        while self._idle:
            child = self._idle.pop()
            if child.alive:
                return child
            await self._discard(child)  # died while idle (killed from outside)
        return None

    def _spawn(self) -> asyncio.Task[_Child]:
        """Start a child; it joins the idle pool when ready, even if its caller was
        cancelled meanwhile (the task itself is never cancelled)."""
        spawning = asyncio.ensure_future(_Child.start(self.memory_limit, self.allowed))
        self._spawning.add(spawning)
        spawning.add_done_callback(self._adopt)
        return spawning

    def _adopt(self, spawning: asyncio.Task[_Child]) -> None:
        self._spawning.discard(spawning)
        if not spawning.cancelled() and spawning.exception() is None:
            child = spawning.result()
            self._children.add(child)
            self._idle.append(child)

    async def _release(self, child: _Child) -> None:
        """Return ``child`` to the idle pool after a job, unless it died meanwhile."""
        if child.alive:
            self._idle.append(child)
        else:
            await self._discard(child)

    async def _discard(self, child: _Child) -> None:
        """Kill ``child`` (if still alive) and release it; a fresh one replaces it when a
        run next needs one. The closing finishes even if the caller is cancelled."""
        self._children.discard(child)
        closing = child.close()
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)


class _Child:
    """One child process and the two pipes to it, seen from the worker's event loop."""

    def __init__(
        self,
        process: BaseProcess,
        outcomes: asyncio.StreamReader,
        transports: tuple[asyncio.WriteTransport, asyncio.ReadTransport],
        memory_limit: int | None,
    ) -> None:
        self._process = process
        self._outcomes = outcomes
        self._transports = transports
        self._memory_limit = memory_limit
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self._exitcode: int | None = None
        self._closing: asyncio.Task[None] | None = None
        self._close_reason: str | None = None
        self._loop.add_reader(process.sentinel, self._on_exit)

    @classmethod
    async def start(cls, memory_limit: int | None, allowed: AllowedFunctions) -> _Child:
        """Start a child process and put its pipes on the event loop."""
        process, jobs, outcomes = await _launch(memory_limit, allowed)
        try:
            reader, transports = await _connect(jobs, outcomes)
        except BaseException:
            process.kill()
            process.join()
            process.close()
            raise
        child = cls(process, reader, transports, memory_limit)
        try:
            # Ready once it has imported chancy: a job's timeout starts with the job.
            await child._receive()
        except BaseException:
            await child.close()
            raise
        return child

    @property
    def alive(self) -> bool:
        """Not closed, and not known to have exited (``exitcode`` asks the process now,
        ahead of the exit callback)."""
        if self._closing is not None or self._exited.done():
            return False
        if self._process.exitcode is not None:
            return False
        # The forkserver reaps a child before it reports the exit code: a child that is
        # no longer in the process table is dead while ``exitcode`` still says None.
        try:
            os.kill(self._process.pid or 0, 0)
        except ProcessLookupError:
            return False
        return True

    async def exchange(self, job: QueuedJob, reporter: ContextReporter | None = None) -> bytes:
        """Send ``job`` and return the frame of its outcome; the frames of its context
        before it go to ``reporter``."""
        self._transports[0].write(_frame(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)))
        while True:
            frame = await self._receive()
            kind = frame[:1]
            if kind == _PROGRESS:
                if reporter is not None:
                    fraction, message = pickle.loads(frame[1:])
                    reporter.progress(job, fraction, message)
            elif kind == _COMPLETING:
                if reporter is not None:
                    reporter.completing(job)
            else:
                return frame

    async def _receive(self) -> bytes:
        """The next frame from the process; :class:`JobCrashedError` if it dies first."""
        reading = asyncio.ensure_future(_read_frame(self._outcomes))
        either: set[asyncio.Future[Any]] = {reading, self._exited}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reading.cancel()  # no-op once read
        if reading.done() and not reading.cancelled():
            frame = reading.result()
            if frame is not None:
                return frame
        # The process is gone, or closed its pipe on the way out: wait for its exit code.
        await asyncio.shield(self._exited)
        raise JobCrashedError(self._crash_message())

    def close(self, reason: str | None = None) -> asyncio.Task[None]:
        """Kill the process unless it has exited, then release it; idempotent. ``reason``
        becomes the message of a run that was waiting on this child."""
        if self._closing is None:
            self._close_reason = reason
            self._closing = asyncio.ensure_future(self._close())
        return self._closing

    async def _close(self) -> None:
        if not self._exited.done() and self._process.exitcode is None:
            self._process.kill()
        await self._exited
        jobs, outcomes = self._transports
        if not jobs.is_closing():  # it closes itself when the child's end goes away
            jobs.abort()  # drops a job still buffered for a dead child
        outcomes.close()
        await asyncio.sleep(0)  # the transports close their pipes on the next iteration
        self._process.close()

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._process.sentinel)
        self._process.join()  # returns at once: the sentinel says the process has ended
        self._exitcode = self._process.exitcode
        if not self._exited.done():
            self._exited.set_result(None)

    def _crash_message(self) -> str:
        if self._close_reason is not None:
            return self._close_reason
        message = f"the process running the job {_describe_exit(self._exitcode)}"
        killed_by_signal = self._exitcode is not None and self._exitcode < 0
        if killed_by_signal and self._memory_limit is not None:
            message += f" (its memory limit is {self._memory_limit} bytes)"
        return message


def _context() -> SpawnContext | ForkServerContext:
    if sys.platform == "linux":
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


async def _launch(
    memory_limit: int | None, allowed: AllowedFunctions
) -> tuple[BaseProcess, Connection[Any, Any], Connection[Any, Any]]:
    """Start a child process; return it with the worker's ends of its two pipes."""
    context = _context()
    jobs_in, jobs_out = context.Pipe(duplex=False)
    outcomes_in, outcomes_out = context.Pipe(duplex=False)
    process = context.Process(
        target=_serve,
        args=(jobs_in, outcomes_out, memory_limit, allowed),
        name="chancy-job",
        daemon=True,
    )
    try:
        # Starting blocks (the first start launches the forkserver): not on the loop.
        await asyncio.to_thread(process.start)
    except BaseException:
        _close_all(jobs_out, outcomes_in)
        raise
    finally:
        _close_all(jobs_in, outcomes_out)  # the child holds its own copies
    return process, jobs_out, outcomes_in


async def _connect(
    jobs: Connection[Any, Any], outcomes: Connection[Any, Any]
) -> tuple[asyncio.StreamReader, tuple[asyncio.WriteTransport, asyncio.ReadTransport]]:
    """Put both pipe ends on the event loop; the transports own (and close) them."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        jobs_transport, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, jobs)
    except BaseException:
        _close_all(jobs, outcomes)
        raise
    try:
        outcomes_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), outcomes
        )
    except BaseException:
        jobs_transport.abort()
        outcomes.close()
        raise
    return reader, (jobs_transport, outcomes_transport)


def _close_all(*connections: Connection[Any, Any]) -> None:
    for connection in connections:
        connection.close()


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "died"
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        return f"died with signal {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"died with signal {-exitcode}"


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's payload, or None at the end of the pipe."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


def _unpack(frame: bytes) -> Any:
    """The return value a child sent back, or raise the failure it reported."""
    try:
        succeeded, payload = pickle.loads(frame)
    except Exception as exc:
        raise RemoteJobError(
            type(exc).__qualname__, f"the job's return value cannot be unpickled: {exc}", ""
        ) from exc
    if succeeded is None:
        raise payload  # a JobControl: Snooze or Cancel
    if not succeeded:
        raise RemoteJobError(*payload)
    return payload


# What follows runs in the child process.


def _serve(
    jobs: Connection[Any, Any],
    outcomes: Connection[Any, Any],
    limit: int | None,
    allowed: AllowedFunctions,
) -> None:
    """The life of a child: run each job that arrives and send back its outcome, until the
    executor closes the jobs pipe (or kills the process). It imports only the functions
    ``allowed`` allows, as the worker's own executors do."""
    # Ctrl-C in a terminal signals the whole process group; the worker decides what
    # happens to running jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if limit is not None:
        import resource  # POSIX only

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with (
        open(jobs.fileno(), "rb", closefd=False) as source,
        open(outcomes.fileno(), "wb", closefd=False) as sink,
    ):
        _send(sink, _READY)
        reporter = _PipeReporter(sink)
        while (job := _receive_job(source)) is not None:
            outcome = _outcome(job, allowed, reporter)
            _flush_output()
            reporter.flush()
            _send(sink, outcome)


def _send(sink: BinaryIO, payload: bytes) -> None:
    sink.write(_frame(payload))
    sink.flush()


class _PipeReporter:
    """The child's end of a job context: its reports go up the pipe to the worker, which
    writes them. Progress is sent at most every :data:`_PROGRESS_FRAME_INTERVAL` (the
    latest held back is sent before the outcome, by :meth:`flush`). A job may report
    from threads of its own: one frame is written at a time."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._held: tuple[float, str | None] | None = None
        self._sent_at = -math.inf

    def progress(self, job: QueuedJob, fraction: float, message: str | None) -> None:
        with self._lock:
            self._held = (fraction, message)
            if time.monotonic() - self._sent_at >= _PROGRESS_FRAME_INTERVAL:
                self._send_held()

    def completing(self, job: QueuedJob) -> None:
        with self._lock:
            self._send_held()
            _send(self._sink, _COMPLETING)

    def flush(self) -> None:
        with self._lock:
            self._send_held()

    def _send_held(self) -> None:
        if self._held is not None:
            payload = pickle.dumps(self._held, protocol=pickle.HIGHEST_PROTOCOL)
            _send(self._sink, _PROGRESS + payload)
            self._held = None
            self._sent_at = time.monotonic()


def _receive_job(source: BinaryIO) -> QueuedJob | None:
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    job: QueuedJob = pickle.loads(source.read(size))
    return job


def _outcome(job: QueuedJob, allowed: AllowedFunctions, reporter: ContextReporter) -> bytes:
    """The pickled outcome of running ``job``: its return value, or what went wrong."""
    try:
        try:
            value = _call(job, allowed, reporter)
        except EXITS as exc:  # a job cannot end its child this way
            raise JobExitError.of(exc) from exc
    except JobControl as control:
        return pickle.dumps((None, control), protocol=pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:
        return _failure(exc)
    try:
        return pickle.dumps((True, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        kind = type(value).__qualname__
        return _failure(exc, f"the job's return value ({kind}) cannot be pickled: {exc}")


def _call(job: QueuedJob, allowed: AllowedFunctions, reporter: ContextReporter) -> Any:
    fn = resolve_allowed(job.func, allowed)
    arguments = call_arguments(fn, job, reporter)
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(**arguments))
    return fn(**arguments)


def _failure(exc: BaseException, message: str | None = None) -> bytes:
    described = describe_exception(exc)
    text = (described["type"], message or described["message"], described["traceback"])
    return pickle.dumps((False, text), protocol=pickle.HIGHEST_PROTOCOL)


def _flush_output() -> None:
    # A killed child loses what it buffered; flush what a job printed while we can. A
    # closed or broken stream must not turn the job's outcome into a crash.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
