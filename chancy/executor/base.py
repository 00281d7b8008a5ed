"""What every executor does, and the failures an executor reports.

An executor runs the functions of one queue in one worker. The worker hands it a
:class:`~chancy.jobs.QueuedJob` whose function it may run (the worker has already
checked that, see :mod:`chancy.allowed`); the executor imports it with
:meth:`Executor.function`, which checks the function's definition against the same
``allowed`` patterns once imported. :meth:`Executor.run` returns the function's return
value or raises what the function raised. Cancelling the task that awaits
:meth:`Executor.run` interrupts the run where the executor can (each executor's
docstring says what it cannot interrupt).
"""

from __future__ import annotations

import abc
import asyncio
import functools
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from chancy.allowed import UNRESTRICTED, AllowedFunctions, check_function
from chancy.callables import GUARD_HINT, resolve
from chancy.errors import FunctionNotImportableError, InvalidFunctionError
from chancy.jobs import QueuedJob, injected_parameters
from chancy.payloads import payload_of

if TYPE_CHECKING:
    from chancy.context import ContextReporter

__all__ = [
    "EXITS",
    "Executor",
    "JobCrashedError",
    "JobExitError",
    "JobTimeoutError",
    "RemoteJobError",
    "call_arguments",
    "describe_exception",
    "job_context",
    "not_importable_message",
    "resolve_allowed",
    "resolve_function",
    "timeout_message",
]


class JobTimeoutError(TimeoutError):
    """The job ran longer than its timeout and was stopped (or abandoned)."""


class JobCrashedError(RuntimeError):
    """The process running the job died (a signal, ``os._exit``, the memory limit)."""


class JobExitError(Exception):
    """The job raised ``SystemExit`` or ``KeyboardInterrupt`` (it called ``sys.exit()``,
    say). A job cannot end its worker: the executors catch these and raise this instead,
    which fails the job without a retry (it would try again)."""

    @classmethod
    def of(cls, exc: BaseException) -> JobExitError:
        exit_ = _or_why_not(lambda: repr(exc), "exit")
        return cls(
            f"the job tried to exit the worker ({exit_}); a job cannot stop its worker: "
            "return, or raise an exception, instead"
        )


EXITS = (SystemExit, KeyboardInterrupt)
"""What a job may raise to exit; :class:`JobExitError` stands in for it."""


class RemoteJobError(Exception):
    """An exception raised by a job in a child process, carried back as text because the
    original may not pickle."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class Executor(abc.ABC):
    """Runs job functions, at most ``concurrency`` at a time (the worker never asks for
    more). ``start`` is awaited before the first run and ``stop`` after the last.
    ``allowed``: the functions it may import and run (default: any). ``reporter``: where
    the :class:`~chancy.context.JobContext` of a job that takes one reports its progress
    (the worker sets it; None: progress is checked, then dropped)."""

    name: ClassVar[str]

    def __init__(self, concurrency: int, *, allowed: AllowedFunctions = UNRESTRICTED) -> None:
        self.concurrency = concurrency
        self.allowed = allowed
        self.reporter: ContextReporter | None = None
        self._imported: set[str] = set()

    def function(self, job: QueuedJob) -> Callable[..., Any]:
        """The function of ``job``, imported by name, if ``allowed`` allows it."""
        return resolve_allowed(job.func, self.allowed)

    async def function_off_loop(self, job: QueuedJob) -> Callable[..., Any]:
        """:meth:`function`, imported in a thread the first time: importing a module runs
        its code, which may take seconds, and the worker's loop (its heartbeat, its other
        jobs) must not wait for it."""
        if job.func in self._imported:
            return self.function(job)
        fn = await asyncio.to_thread(self._prepared, job)
        self._imported.add(job.func)
        return fn

    def _prepared(self, job: QueuedJob) -> Callable[..., Any]:
        """:meth:`function`, with the reading of its payload's types (which may import
        Pydantic and build validators) done too, in the same thread."""
        fn = self.function(job)
        payload_of(fn)
        return fn

    def interrupt(self, job_id: int) -> bool:
        """Whether cancelling the run of ``job_id`` stops its code. False when the code
        runs in a thread now (nothing can stop it): the run should be left to end. When
        True, a call that was about to start in a thread never starts."""
        return True

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare to run jobs (start pools, children)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` took; runs still going are abandoned."""

    @abc.abstractmethod
    async def run(self, job: QueuedJob) -> Any:
        """Run ``job`` to completion and return its function's return value.

        Raises what the function raised, :class:`JobTimeoutError` when ``job.timeout``
        passed, or :class:`JobCrashedError` when the process running it died.
        """


@functools.lru_cache(maxsize=4096)
def resolve_function(name: str) -> Callable[..., Any]:
    """:func:`chancy.callables.resolve`, remembered: a worker resolves each name once."""
    return resolve(name)


def resolve_allowed(name: str, allowed: AllowedFunctions) -> Callable[..., Any]:
    """:func:`resolve_function`, when ``allowed`` allows ``name`` (checked before the
    import) and the function it finds (checked after): else
    :class:`~chancy.errors.FunctionNotAllowedError`. Whatever ``allowed`` says, what it
    finds must be a function ``Job.from_func`` would accept
    (:func:`~chancy.allowed.check_function`), else
    :class:`~chancy.errors.CorruptJobError`: a row naming a class or a callable instance
    never gets it called. Anything raised while importing it (no such module, no such
    function in it, a module that raises when imported) is raised as
    :class:`~chancy.errors.FunctionNotImportableError`, caused by the original: a problem
    of where the worker runs, not of the job. A ``name`` that ``allowed`` aliases is
    resolved to the new name first, which all of this applies to."""
    if not allowed.unrestricted:
        allowed.check(name)
    name = allowed.target(name)
    try:
        fn = resolve_function(name)
    except (Exception, *EXITS) as exc:  # a module that exits at import cannot stop its worker
        raise FunctionNotImportableError(not_importable_message(name, exc)) from exc
    check_function(name, fn)
    allowed.check_definition(name, fn)
    return fn


def not_importable_message(name: str, exc: BaseException) -> str:
    """What :class:`~chancy.errors.FunctionNotImportableError` says of ``name``, which
    could not be imported because of ``exc``: the problem, and the fix."""
    if isinstance(exc, InvalidFunctionError):
        why = str(exc)  # chancy's own words: no such function, or an unguarded entry point
    elif isinstance(exc, EXITS):
        exit_ = _or_why_not(lambda: repr(exc), "exit")
        why = f"its module exits when imported ({exit_}): if it is a script, {GUARD_HINT}"
    else:
        why = f"{type(exc).__qualname__}: {_or_why_not(lambda: str(exc), 'message')}"
    return (
        f"this worker cannot import the job function {name!r} ({why}); start the worker "
        "where its module is importable (in the app's directory, or with PYTHONPATH set), "
        "or pass `chancy worker --app module:chancy`"
    )


def call_arguments(
    fn: Callable[..., Any], job: QueuedJob, reporter: ContextReporter | None = None
) -> dict[str, Any]:
    """The keyword arguments of the call: the job's kwargs (those of typed parameters
    validated back into their types, see :mod:`chancy.payloads`), plus the running
    QueuedJob for a keyword-only parameter annotated with it, and a
    :class:`~chancy.context.JobContext` reporting to ``reporter`` for one annotated with
    that. :class:`~chancy.errors.IncompatiblePayloadError` when the stored kwargs no
    longer fit the function's types."""
    payload = payload_of(fn)
    arguments = dict(job.kwargs) if payload is None else payload.arguments(job.kwargs)
    for name, kind in _injected_parameters(fn):
        arguments[name] = job if kind == "job" else job_context(job, reporter)
    return arguments


def job_context(job: QueuedJob, reporter: ContextReporter | None) -> Any:
    """A :class:`~chancy.context.JobContext` of ``job`` reporting to ``reporter``
    (imported here, on first use: jobs without a context never load it)."""
    from chancy.context import SILENT, JobContext

    return JobContext(job, reporter or SILENT)


@functools.lru_cache(maxsize=4096)
def _injected_parameters(fn: Callable[..., Any]) -> tuple[tuple[str, str], ...]:
    try:
        return tuple(injected_parameters(fn).items())
    except (TypeError, ValueError):
        return ()


def timeout_message(job: QueuedJob) -> str:
    """The message of the :class:`JobTimeoutError` of ``job``."""
    return f"the job ran longer than its timeout of {job.timeout:g} s"


def describe_exception(exc: BaseException) -> dict[str, str]:
    """The ``type``, ``message`` and ``traceback`` of a failure, as stored in ``errors``.
    Never raises: a message or traceback that cannot be made (a ``__str__`` that raises,
    a chain too deep to format) says so in its place."""
    if isinstance(exc, RemoteJobError):
        return {"type": exc.type_name, "message": exc.message, "traceback": exc.traceback_text}
    return {
        "type": type(exc).__qualname__,
        "message": _or_why_not(lambda: str(exc), "message"),
        "traceback": _or_why_not(lambda: "".join(traceback.format_exception(exc)), "traceback"),
    }


def _or_why_not(text: Callable[[], str], what: str) -> str:
    try:
        return text()
    except Exception as exc:
        return f"<the {what} could not be made: {type(exc).__qualname__}>"
