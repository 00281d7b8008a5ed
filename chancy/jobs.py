"""Jobs as values: what to run (:class:`Job`), and a job as stored (:class:`QueuedJob`).

A :class:`Job` is created from a plain function with :meth:`Job.from_func` and never
changes; every ``with_*`` method returns a new Job. Everything that would stop a job from
running (a function a worker cannot import, kwargs that are not JSON, a bad priority) is
rejected here, before anything is stored.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Self

from chancy.callables import name_of
from chancy.errors import CorruptJobError, InvalidJobError, InvalidKwargsError
from chancy.payloads import SECRETS_META_KEY, masked, payload_of
from chancy.queue import RATE_PERIOD_MAX, validate_queue_name
from chancy.states import JobState

__all__ = [
    "JOB_FIELDS",
    "MAX_ATTEMPTS_DEFAULT",
    "MAX_SNOOZES_DEFAULT",
    "PRIORITY_DEFAULT",
    "QUEUE_DEFAULT",
    "STORED_FIELDS",
    "Job",
    "QueuedJob",
    "Reference",
    "frozen_json_object",
    "injected_parameters",
    "json_text",
    "many_jobs",
    "one_job",
]

QUEUE_DEFAULT = "default"
PRIORITY_DEFAULT = 0
MAX_ATTEMPTS_DEFAULT = 1
MAX_SNOOZES_DEFAULT = 100
_INT32 = range(-(2**31), 2**31)
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """What :meth:`Chancy.push` returns: the id of the stored job. ``existing``: the push
    stored nothing, because an unfinished job (this one) already held the job's
    ``unique_key``; it does not take part in comparisons."""

    id: int
    existing: bool = dataclasses.field(default=False, compare=False)

    def __int__(self) -> int:
        return self.id


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Job:
    """A unit of work: a function's importable name, its keyword arguments, and how to run it.

    ``priority``: lower values run first (default 0); equal priorities run in the order the
    database received them. ``max_attempts``: how many times the job may run before it
    ends ``failed`` (default 1: no retries). ``scheduled_at`` (an aware datetime) or
    ``delay`` (seconds after the push, by the database's clock): not before then.
    ``unique_key``: at most one unfinished job per key. ``timeout``: seconds one attempt
    may take. ``meta``: a JSON object stored with the job for your own use. ``backoff``:
    seconds before the first retry, doubled for each further one (default 1 s).
    ``max_snoozes``: how many times the job may raise :class:`~chancy.control.Snooze`
    (default 100); the snooze past that fails it.

    Jobs are immutable and reusable: pushing the same Job twice makes two jobs.
    """

    func: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _EMPTY)
    queue: str = QUEUE_DEFAULT
    priority: int = PRIORITY_DEFAULT
    max_attempts: int = MAX_ATTEMPTS_DEFAULT
    scheduled_at: datetime | None = None
    delay: float | None = None
    unique_key: str | None = None
    timeout: float | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _EMPTY)
    backoff: float | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_key: str | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    max_snoozes: int = MAX_SNOOZES_DEFAULT

    def __post_init__(self) -> None:
        if not isinstance(self.func, str) or not self.func:
            raise InvalidJobError("func must be a dotted name; create jobs with Job.from_func(fn)")
        set_ = object.__setattr__
        set_(self, "kwargs", frozen_json_object(self.kwargs, "kwargs", InvalidKwargsError))
        set_(self, "meta", frozen_json_object(self.meta, "meta", InvalidJobError))
        validate_queue_name(self.queue)
        _check_int(self.priority, "priority", _INT32)
        _check_int(self.max_attempts, "max_attempts", range(1, 2**31))
        _check_int(self.max_snoozes, "max_snoozes", range(0, 2**31))
        if self.scheduled_at is not None:
            set_(self, "scheduled_at", _aware(self.scheduled_at))
        if self.delay is not None:
            set_(self, "delay", _seconds(self.delay, "delay", allow_zero=True))
            _check_storable_delay(self.delay)
        if self.timeout is not None:
            set_(self, "timeout", _seconds(self.timeout, "timeout", allow_zero=False))
        if self.backoff is not None:
            set_(self, "backoff", _seconds(self.backoff, "backoff", allow_zero=True))
        if self.unique_key is not None and (
            not isinstance(self.unique_key, str) or not self.unique_key
        ):
            raise InvalidJobError("unique_key must be a non-empty str, or None")
        if self.unique_key is not None:
            _check_text(self.unique_key, "unique_key")
        _check_key_limit(self.concurrency_key, self.concurrency_limit, "concurrency")
        _check_key_limit(self.rate_key, self.rate_limit, "rate")
        if self.rate_key is not None:
            set_(self, "rate_period", _rate_period(self.rate_period))

    def __hash__(self) -> int:
        # JSON objects hash by their canonical text: equal jobs hash equal.
        return hash(
            tuple(
                _canonical_json(value) if name in _JSON_OBJECTS else value
                for name in JOB_FIELDS
                for value in (getattr(self, name),)
            )
        )

    def __repr__(self) -> str:
        # As a dataclass's, with the secret kwargs masked: jobs end up in logs.
        shown = (
            f"{field.name}={masked(value, self.meta) if field.name == 'kwargs' else value!r}"
            for field in dataclasses.fields(self)
            for value in (getattr(self, field.name),)
        )
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Mapping proxies do not pickle; the process executor sends jobs to its children.
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["kwargs"] = dict(self.kwargs)
        values["meta"] = dict(self.meta)
        if "parent_results" in values:
            values["parent_results"] = dict(values["parent_results"])
        return (_rebuild, (type(self), values))

    @classmethod
    def from_func(
        cls,
        fn: Callable[..., Any],
        *,
        kwargs: Mapping[str, Any] | None = None,
        queue: str = QUEUE_DEFAULT,
        priority: int = PRIORITY_DEFAULT,
        max_attempts: int = MAX_ATTEMPTS_DEFAULT,
        scheduled_at: datetime | None = None,
        delay: timedelta | float | None = None,
        unique_key: str | None = None,
        timeout: timedelta | float | None = None,
        meta: Mapping[str, Any] | None = None,
        backoff: timedelta | float | None = None,
    ) -> Job:
        """Make a Job that calls ``fn(**kwargs)``.

        ``fn`` must be importable by name: a function defined at module level (in a script
        run as ``python job.py`` it is stored as ``job.fn``). Lambdas, closures, bound
        methods and ``functools.partial`` raise :class:`~chancy.errors.InvalidFunctionError`.
        ``kwargs`` must be JSON and fit ``fn``'s signature, else
        :class:`~chancy.errors.InvalidKwargsError` names the key at fault.

        With Pydantic installed (``chancy[pydantic]``), the kwargs of parameters annotated
        with types JSON does not carry (models, dataclasses, ``datetime``, ``Decimal``,
        ...) are validated against their annotations and stored in their JSON form; the
        worker gives the function those types back (see :mod:`chancy.payloads`). The
        paths of secret values (``SecretStr``) are recorded in ``meta``, so that they are
        masked wherever the job is shown.
        """
        name = name_of(fn)
        if kwargs is not None:
            _check_str_keys(kwargs, "kwargs", InvalidKwargsError)  # before naming parameters
        _check_signature(fn, kwargs or {})
        payload = payload_of(fn)
        if payload is not None and kwargs:
            kwargs, secrets = payload.stored(kwargs)
            if secrets:
                meta = {**(meta or {}), SECRETS_META_KEY: secrets}
        return cls(
            func=name,
            kwargs=kwargs or _EMPTY,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            scheduled_at=scheduled_at,
            delay=_seconds(delay, "delay", allow_zero=True) if delay is not None else None,
            unique_key=unique_key,
            timeout=_seconds(timeout, "timeout", allow_zero=False) if timeout is not None else None,
            meta=meta or _EMPTY,
            backoff=_seconds(backoff, "backoff", allow_zero=True) if backoff is not None else None,
        )

    def with_priority(self, priority: int) -> Self:
        """A copy that runs with ``priority`` (lower values run first)."""
        return dataclasses.replace(self, priority=priority)

    def with_max_attempts(self, max_attempts: int) -> Self:
        """A copy that may run up to ``max_attempts`` times."""
        return dataclasses.replace(self, max_attempts=max_attempts)

    def with_max_snoozes(self, max_snoozes: int) -> Self:
        """A copy that may raise :class:`~chancy.control.Snooze` up to ``max_snoozes``
        times (0: never); the snooze past that fails the job. A snooze uses no attempt,
        so this bound is what stops a job that snoozes in a loop."""
        return dataclasses.replace(self, max_snoozes=max_snoozes)

    def with_scheduled_at(self, scheduled_at: datetime) -> Self:
        """A copy that runs no earlier than ``scheduled_at`` (an aware datetime)."""
        return dataclasses.replace(self, scheduled_at=scheduled_at, delay=None)

    def with_delay(self, delay: timedelta | float) -> Self:
        """A copy that runs no earlier than ``delay`` after it is pushed (database clock)."""
        return dataclasses.replace(
            self, delay=_seconds(delay, "delay", allow_zero=True), scheduled_at=None
        )

    def with_unique_key(self, unique_key: str | None) -> Self:
        """A copy that is not pushed again while a job with the same key is unfinished."""
        return dataclasses.replace(self, unique_key=unique_key)

    def with_timeout(self, timeout: timedelta | float | None) -> Self:
        """A copy whose attempts may take at most ``timeout`` (seconds or a timedelta)."""
        seconds = None if timeout is None else _seconds(timeout, "timeout", allow_zero=False)
        return dataclasses.replace(self, timeout=seconds)

    def with_meta(self, meta: Mapping[str, Any]) -> Self:
        """A copy with ``meta`` (a JSON object) in place of the current one. The record of
        which kwargs are secret (see :meth:`from_func`) is kept."""
        secrets = self.meta.get(SECRETS_META_KEY)
        if secrets is not None and isinstance(meta, Mapping) and SECRETS_META_KEY not in meta:
            meta = {**meta, SECRETS_META_KEY: secrets}
        return dataclasses.replace(self, meta=meta)

    def with_concurrency_key(self, key: str | None, *, limit: int = 1) -> Self:
        """A copy of which at most ``limit`` jobs with the same ``key`` run at once in its
        queue, across all workers (None: no such limit)."""
        return dataclasses.replace(
            self, concurrency_key=key, concurrency_limit=None if key is None else limit
        )

    def with_rate_key(
        self, key: str | None, *, limit: int, period: timedelta | float = 1.0
    ) -> Self:
        """A copy of which at most ``limit`` jobs with the same ``key`` start per ``period``
        (seconds or a timedelta) in its queue, across all workers (None: no such limit)."""
        if key is None:
            return dataclasses.replace(self, rate_key=None, rate_limit=None, rate_period=None)
        seconds = _rate_period(period)
        return dataclasses.replace(self, rate_key=key, rate_limit=limit, rate_period=seconds)

    def with_kwargs(self, kwargs: Mapping[str, Any]) -> Self:
        """A copy that calls the function with ``kwargs`` in place of the current ones:
        JSON values, stored as they are (typed values are validated by
        :meth:`from_func`, which knows the function)."""
        return dataclasses.replace(self, kwargs=kwargs)

    def with_backoff(self, backoff: timedelta | float | None) -> Self:
        """A copy whose retries wait ``backoff`` seconds after the first failed attempt,
        doubling after each further one (with jitter); None: the worker's default."""
        seconds = None if backoff is None else _seconds(backoff, "backoff", allow_zero=True)
        return dataclasses.replace(self, backoff=seconds)

    def with_queue(self, queue: str) -> Self:
        """A copy that :meth:`Chancy.push(job) <chancy.app.Chancy.push>` sends to ``queue``."""
        return dataclasses.replace(self, queue=queue)

    def _moved_to(self, queue: str) -> Self:
        """:meth:`with_queue` for a queue name already validated: a copy of the checked
        fields, without checking them again (a push may move thousands of jobs)."""
        if self.queue == queue:
            return self
        copy = object.__new__(type(self))
        for name in JOB_FIELDS:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "queue", queue)
        return copy


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class QueuedJob(Job):
    """A job as the database holds it: the :class:`Job` plus its id, state and history.

    ``attempts`` counts the runs started so far; ``errors`` holds one entry per failed
    attempt; ``result`` is the stored return value of a succeeded job. ``fence`` is the
    fencing token of the job's latest attempt (a random number drawn at its claim, None
    before the first): chancy's writes about a running attempt name it. A job function can
    receive the running QueuedJob by declaring a keyword-only parameter annotated with it.

    A step of a workflow (:mod:`chancy.workflow`) has its ``workflow_id`` and its
    ``step`` name; ``always``: it runs once its parents finished, whatever their outcome;
    ``waiting_on``: while ``blocked``, how many parents it still waits for. The job a
    worker runs has ``parent_results``: its parents' results by step name (empty for a
    job that is not a step, and for a job read with ``get_job``).
    """

    id: int
    state: JobState
    attempts: int = 0
    fence: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    errors: tuple[Mapping[str, Any], ...] = ()
    result: Any = None
    snoozes: int = 0
    progress: float | None = None
    progress_message: str | None = None
    progress_at: datetime | None = None
    workflow_id: int | None = None
    step: str | None = None
    always: bool | None = None
    waiting_on: int | None = None
    parent_results: Mapping[str, Any] = dataclasses.field(default_factory=lambda: _EMPTY)

    __hash__ = Job.__hash__

    @property
    def reference(self) -> Reference:
        """The :class:`Reference` of this job."""
        return Reference(self.id)

    def _with_parent_results(self, results: Mapping[str, Any]) -> Self:
        """A copy with ``parent_results`` (read from the parents' rows, so not checked
        again, as :meth:`from_row` checks nothing)."""
        copy = object.__new__(type(self))
        for field in dataclasses.fields(self):
            object.__setattr__(copy, field.name, getattr(self, field.name))
        object.__setattr__(copy, "parent_results", MappingProxyType(dict(results)))
        return copy

    @property
    def job(self) -> Job:
        """The plain :class:`Job` this was pushed from (push it again to run it again)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(Job)}
        return Job(**fields)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> QueuedJob:
        """Map a stored job row (column name to value, JSON decoded) to a QueuedJob.

        The row was checked when its job was made, so it is not checked again: a worker
        maps every job it claims, and the checks cost more than the mapping. Nor does the
        mapping fail on a row that someone else wrote badly (kwargs that are not an
        object stay as stored): the worker checks what it needs before running the job
        (:func:`chancy.allowed.check_runnable`), so a bad row fails as its own job, never
        the claim of the others. Only an unknown state, which no value can carry, raises
        :class:`~chancy.errors.CorruptJobError`.
        """
        job = object.__new__(cls)
        set_ = object.__setattr__
        for name in _ROW_FIELDS:
            set_(job, name, row[name])
        for name, stored in _ROW_FIELDS_READ:
            set_(job, name, stored(row[name]))
        set_(job, "delay", None)
        set_(job, "parent_results", _EMPTY)
        set_(job, "state", _stored_state(row))
        return job


def one_job(queue: str | Job, job: Job | None) -> list[Job]:
    """The batch of ``push(queue, job)`` or ``push(job)``, checked."""
    if isinstance(queue, Job):
        if job is not None:
            raise InvalidJobError("push(job) takes one job; name the queue: push(queue, job)")
        return [queue]
    if job is None:
        raise InvalidJobError(f"push({queue!r}) needs a job: push({queue!r}, Job.from_func(fn))")
    return [_job(job)._moved_to(validate_queue_name(queue))]


def many_jobs(queue: str | Sequence[Job], jobs: Sequence[Job] | None) -> list[Job]:
    """The batch of ``push_many(queue, jobs)`` or ``push_many(jobs)``, checked."""
    if not isinstance(queue, str):
        return [_job(job) for job in queue]
    if jobs is None:
        raise InvalidJobError("push_many(queue, jobs) needs the jobs")
    name = validate_queue_name(queue)
    moved: dict[int, Job] = {}  # a job given many times is moved once
    return [
        moved.get(id(job)) or moved.setdefault(id(job), _job(job)._moved_to(name)) for job in jobs
    ]


def _job(value: object) -> Job:
    if not isinstance(value, Job):
        raise InvalidJobError(
            f"expected a Job, got {type(value).__name__}; wrap functions with Job.from_func(fn)"
        )
    return value


JOB_FIELDS = tuple(field.name for field in dataclasses.fields(Job))
"""The fields of a :class:`Job`: what a push sends (``delay`` becomes ``scheduled_at``)."""
STORED_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(QueuedJob)
    if field.name not in ("delay", "parent_results")
)
"""The fields of a :class:`QueuedJob` that are columns of ``chancy_jobs``: all but
``delay``, an instruction to the push stored as ``scheduled_at``, and ``parent_results``,
read from the parents' rows."""
_JSON_OBJECTS = frozenset({"kwargs", "meta"})


def _rebuild(cls: type[Job], values: dict[str, Any]) -> Job:
    return cls(**values)


def _stored_object(value: Any) -> Any:
    """A stored JSON object, read-only; any other JSON value as it is, for the worker's
    check to reject (a mapping that failed here would fail the whole claim)."""
    if type(value) is dict:
        return MappingProxyType(value) if value else _EMPTY
    return value


def _stored_errors(value: Any) -> tuple[Any, ...]:
    if type(value) is list:
        return tuple(value)
    return () if value is None else (value,)


def _stored_state(row: Mapping[Any, Any]) -> JobState:
    try:
        return JobState(row["state"])
    except ValueError:
        known = ", ".join(state.value for state in JobState)
        raise CorruptJobError(
            f"job {row['id']} has the state {row['state']!r}, which chancy does not know "
            f"(it knows {known}): a newer chancy wrote it (upgrade chancy), or the row was "
            "changed by hand (set a known state)"
        ) from None


# How from_row reads each stored field: most as they are, these three through a reader
# (and ``state`` through _stored_state, which names the row when it is unknown).
_ROW_READERS = {"kwargs": _stored_object, "meta": _stored_object, "errors": _stored_errors}
_ROW_FIELDS = tuple(name for name in STORED_FIELDS if name != "state" and name not in _ROW_READERS)
_ROW_FIELDS_READ = tuple(
    (name, _ROW_READERS[name]) for name in STORED_FIELDS if name in _ROW_READERS
)

_QUEUED_JOB_NAMES = (
    "QueuedJob",
    "chancy.QueuedJob",
    "chancy.jobs.QueuedJob",
    "chancy.executor.QueuedJob",
    "chancy.executor.job.QueuedJob",
)


_JOB_CONTEXT_NAMES = ("JobContext", "chancy.JobContext", "chancy.context.JobContext")


def queued_job_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of ``fn``'s keyword-only parameter annotated :class:`QueuedJob`, if any."""
    return next((name for name, kind in injected_parameters(fn).items() if kind == "job"), None)


def injected_parameters(fn: Callable[..., Any]) -> dict[str, str]:
    """``fn``'s keyword-only parameters that the worker fills in, by name: ``"job"`` for
    one annotated :class:`QueuedJob` (the running job), ``"context"`` for one annotated
    :class:`~chancy.context.JobContext` (known by name: this module is below it)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    injected: dict[str, str] = {}
    for parameter in inspect.signature(fn).parameters.values():
        if parameter.kind is not parameter.KEYWORD_ONLY:
            continue
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation is QueuedJob or annotation in _QUEUED_JOB_NAMES:
            injected[parameter.name] = "job"
        elif _is_job_context(annotation):
            injected[parameter.name] = "context"
    return injected


def _is_job_context(annotation: object) -> bool:
    if isinstance(annotation, str):
        return annotation in _JOB_CONTEXT_NAMES
    return (
        isinstance(annotation, type)
        and annotation.__qualname__ == "JobContext"
        and annotation.__module__ == "chancy.context"
    )


def _check_signature(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # some builtins have no signature; the worker reports a mismatch
    injected = injected_parameters(fn)
    parameters = signature.parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key in kwargs:
        parameter = parameters.get(key)
        if parameter is None and not accepts_any:
            close = difflib.get_close_matches(key, list(parameters), n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else (f"it takes {', '.join(parameters) or 'no arguments'}")
            )
            raise InvalidKwargsError(f"{fn.__qualname__}() has no parameter {key!r}; {hint}")
        if parameter is not None and parameter.kind is parameter.POSITIONAL_ONLY:
            raise InvalidKwargsError(
                f"{fn.__qualname__}() takes {key!r} positionally only; jobs pass kwargs by name"
            )
        if key in injected:
            what = "QueuedJob" if injected[key] == "job" else "JobContext"
            raise InvalidKwargsError(
                f"{key!r} receives the running {what}; do not pass it in kwargs"
            )
    for name, parameter in parameters.items():
        required = parameter.default is parameter.empty and parameter.kind in (
            parameter.POSITIONAL_OR_KEYWORD,
            parameter.KEYWORD_ONLY,
            parameter.POSITIONAL_ONLY,
        )
        if required and name not in kwargs and name not in injected:
            raise InvalidKwargsError(
                f"{fn.__qualname__}() needs the argument {name!r}; add it to kwargs"
            )


def _check_key_limit(key: str | None, limit: int | None, what: str) -> None:
    if key is None:
        if limit is not None:
            raise InvalidJobError(f"a {what} limit needs a {what} key; use with_{what}_key()")
        return
    if not isinstance(key, str) or not key:
        raise InvalidJobError(f"the {what} key must be a non-empty str, or None")
    _check_text(key, f"the {what} key {key!r}")
    _check_int(limit, f"the {what} limit", range(1, 2**31))


def frozen_json_object(
    value: Mapping[str, Any], what: str, error: type[InvalidJobError]
) -> Mapping[str, Any]:
    """A read-only copy of ``value`` exactly as it will come back from the database;
    ``error`` names what PostgreSQL could not store (``what`` and the key at fault)."""
    if value is _EMPTY:
        return value
    _check_str_keys(value, what, error)
    for key, item in value.items():
        _check_text(key, f"{what} key {key!r}", error)
        try:
            json.dumps(item, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise error(
                f"{what}[{key!r}] cannot be stored as JSON ({exc}); pass str, int, float, bool, "
                "None, or lists and dicts of them"
            ) from exc
        _check_strings(item, f"{what}[{key!r}]", error)
    return MappingProxyType(json.loads(json.dumps(dict(value))))


def _check_str_keys(value: object, what: str, error: type[InvalidJobError]) -> None:
    """Raise unless ``value`` is a mapping whose keys are all str (as JSON's are)."""
    if not isinstance(value, Mapping):
        raise error(
            f"{what} must be a mapping of str keys to JSON values, not {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str):
            raise error(f"{what} key {key!r} is a {type(key).__name__}; JSON keys must be str")


def _check_strings(value: Any, what: str, error: type[InvalidJobError]) -> None:
    if isinstance(value, str):
        _check_text(value, what, error)
    elif isinstance(value, dict):
        # json.dumps would turn a key 1 into "1": the job would get back what it never sent.
        _check_str_keys(value, what, error)
        for key, item in value.items():
            _check_text(key, f"{what} key {key!r}", error)
            _check_strings(item, what, error)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_strings(item, what, error)


def _check_text(text: str, what: str, error: type[InvalidJobError] = InvalidJobError) -> None:
    """PostgreSQL stores UTF-8 text without NUL characters: refuse what it would reject."""
    if "\x00" in text:
        raise error(f"{what} contains a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(
            f"{what} contains a lone surrogate ({text[exc.start]!r}), which is not valid "
            "UTF-8; PostgreSQL cannot store it"
        ) from None


def json_text(value: Any) -> str:
    """``value`` (checked JSON) as the JSON text a push stores, written so that PostgreSQL
    gives every number back with its type: ``jsonb`` keeps numbers as ``numeric`` and
    would print a float written as ``1e+16`` as the integer ``10000000000000000``."""
    if isinstance(value, Mapping):
        value = dict(value)
    text = json.dumps(value, allow_nan=False)
    if "e+" not in text:  # no float with a positive exponent: the common case
        return text
    floats: list[float] = []
    text = json.dumps(_mark_big_floats(value, floats))
    for index, number in enumerate(floats):
        text = text.replace(f'"\\u0000{index}\\u0000"', f"{int(number)}.0", 1)
    return text


def _mark_big_floats(value: Any, floats: list[float]) -> Any:
    """``value`` with each float written with an exponent (all integral) replaced by a
    marker no stored string can hold (it has NULs), recorded in ``floats``."""
    if isinstance(value, float) and "e+" in repr(value):
        floats.append(value)
        return f"\x00{len(floats) - 1}\x00"
    if isinstance(value, dict):
        return {key: _mark_big_floats(item, floats) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mark_big_floats(item, floats) for item in value]
    return value


def _canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))


# The latest time a job can be scheduled for: Python's datetimes end in the year 9999.
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


def _check_storable_delay(seconds: float) -> None:
    latest = (_LATEST - datetime.now(UTC)).total_seconds()
    if seconds > latest:
        raise InvalidJobError(
            f"delay is {seconds:g} s, which ends after the year 9999; use at most {latest:.0f} s "
            "(or with_scheduled_at)"
        )


def _check_int(value: object, what: str, allowed: range) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobError(f"{what} must be an int, not {type(value).__name__}")
    if value not in allowed:
        raise InvalidJobError(
            f"{what} is {value}; use a value from {allowed.start} to {allowed.stop - 1}"
        )


def _aware(moment: object) -> datetime:
    if not isinstance(moment, datetime):
        raise InvalidJobError(f"scheduled_at must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidJobError(
            f"scheduled_at {moment.isoformat()} has no time zone; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc) + timedelta(minutes=5)) or use with_delay()"
        )
    try:
        moment.astimezone(UTC)  # as the push sends it, and as it is read back
    except OverflowError:
        raise InvalidJobError(
            f"scheduled_at {moment.isoformat()} falls outside the years 1 to 9999 in UTC, "
            "which Python's datetime cannot hold; pass a time within them"
        ) from None
    return moment


def _rate_period(value: object) -> float:
    seconds = _seconds(value, "rate period", allow_zero=False)
    longest = RATE_PERIOD_MAX.total_seconds()
    if seconds > longest:
        raise InvalidJobError(
            f"rate period is {seconds:g} s; use at most {longest:.0f} s "
            f"({RATE_PERIOD_MAX.days} days), as the claim must compute now - period"
        )
    return seconds


def _seconds(value: object, what: str, *, allow_zero: bool) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{what} must be seconds or a timedelta, not {type(value).__name__}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidJobError(f"{what} is {value}; use a positive number of seconds")
    return seconds
