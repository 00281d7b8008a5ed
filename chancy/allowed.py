"""Which functions a worker may run, and what a claimed job must be before it runs.

A job row names its function, and a worker imports and calls it: whoever can write
chancy's jobs table can make every worker run code. ``allowed`` keeps that door shut::

    Chancy(dsn, allowed=["myapp.tasks.*", "myapp.billing:charge"])
    chancy worker --app myapp:chancy --allow 'myapp.tasks.*'

The patterns are shell-style globs (:mod:`fnmatch`, case-sensitive) on the name a job
stores, the one :meth:`Job.from_func <chancy.executor.Job.from_func>` stores
(``module.function``, or ``module.Class.method`` for a static method); ``module:function``
is accepted and means the same. ``*`` matches across dots: ``myapp.tasks.*`` allows every
function in ``myapp.tasks`` and in the modules under it. Write patterns that start with
your own package's name.

- The check runs before anything is imported: a job whose name matches no pattern fails at
  once (:class:`~chancy.errors.FunctionNotAllowedError`, never retried) and its module's
  top-level code never runs.
- After the import, the function found must be *defined* under an allowed name too: a
  name that reaches out through an allowed module's attributes
  (``myapp.tasks.os.system``, where ``myapp.tasks`` imports ``os``) is refused.
- Whatever the patterns, what the import finds must be a function, as ``Job.from_func``
  accepts (:func:`check_function`): a row naming a class (say, a subclass of
  ``subprocess.Popen`` in an allowed module), an instance with ``__call__`` or a class
  method fails (:class:`~chancy.errors.CorruptJobError`, never retried) and nothing is
  called.
- With no patterns (None or an empty list) a worker runs any importable function, as the
  seed example needs, and warns once when it starts.

Every claimed job is also checked, without importing anything, for what running it needs
(:func:`check_runnable`): a dotted name, kwargs and meta that are JSON objects, a timeout
that is None or positive. The row is untrusted input: one that fails a check fails as that
job (:class:`~chancy.errors.CorruptJobError`, never retried) and the worker goes on.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from chancy.callables import is_job_function
from chancy.errors import ConfigurationError, CorruptJobError, FunctionNotAllowedError

if TYPE_CHECKING:
    from chancy.jobs import QueuedJob

__all__ = [
    "DOTTED_NAME",
    "UNRESTRICTED",
    "AllowedFunctions",
    "check_function",
    "check_runnable",
    "defined_name",
]

DOTTED_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)+")
"""A function's importable name: identifiers joined by dots, at least a module and a name."""
_PATTERN = re.compile(r"[\w.*?\[\]!]+")
_SHOWN_MAX = 80


@dataclasses.dataclass(frozen=True)
class AllowedFunctions:
    """The functions a worker may run: glob ``patterns`` on their dotted names, or any
    function at all when there are none. Build it with :meth:`of`, which checks and
    normalises the patterns. Pickles (the ``processes`` executor sends it to its
    children)."""

    patterns: tuple[str, ...] = ()
    _regex: re.Pattern[str] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.patterns:
            joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns)
            object.__setattr__(self, "_regex", re.compile(joined))

    @classmethod
    def of(cls, patterns: AllowedFunctions | Iterable[str] | None) -> AllowedFunctions:
        """The allowed functions of an ``allowed=`` setting: a list of patterns, or None."""
        if isinstance(patterns, AllowedFunctions):
            return patterns
        if patterns is None:
            return UNRESTRICTED
        if isinstance(patterns, str | bytes):
            raise ConfigurationError(
                f"allowed= takes a list of patterns, not one string; write allowed=[{patterns!r}]"
            )
        return cls(tuple(dict.fromkeys(_normalised(pattern) for pattern in patterns)))

    @property
    def unrestricted(self) -> bool:
        """True when no pattern is set: any importable function may run."""
        return self._regex is None

    def allows(self, name: str) -> bool:
        """Whether a function stored as ``name`` may run."""
        return self._regex is None or self._regex.match(name) is not None

    def check(self, name: str) -> None:
        """Raise :class:`FunctionNotAllowedError` unless ``name`` may run (imports nothing)."""
        if not self.allows(name):
            raise FunctionNotAllowedError(
                f"the job function {_shown(name)} is not allowed in this worker: it matches "
                f"none of allowed={list(self.patterns)}, so it was not imported. If it is "
                "yours to run, add a pattern for it to Chancy(allowed=[...]) (or `chancy "
                "worker --allow PATTERN`)"
            )

    def check_definition(self, name: str, fn: Callable[..., Any]) -> None:
        """After the import: raise :class:`FunctionNotAllowedError` unless the function
        found for ``name`` is itself defined under an allowed name."""
        if self._regex is None:
            return
        defined = defined_name(fn)
        if defined is None or not self.allows(defined):
            raise FunctionNotAllowedError(
                f"the job function {_shown(name)} matches allowed={list(self.patterns)}, but "
                f"it finds {defined or repr(fn)}, which is defined elsewhere and not "
                "allowed; store the function under its own name (as Job.from_func does), or "
                "allow the module that defines it"
            )


UNRESTRICTED = AllowedFunctions()
"""No patterns: any importable function may run."""


def defined_name(fn: object) -> str | None:
    """``module.qualname`` of where ``fn`` is defined, or None if it does not say."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    return f"{module}.{qualname}"


def check_function(name: str, fn: object) -> None:
    """After the import: raise :class:`CorruptJobError` unless what ``name`` found is a
    function that ``Job.from_func`` would accept
    (:func:`~chancy.callables.is_job_function`). Calling anything else (a class, an
    instance with ``__call__``, a bound method) runs code the name does not show."""
    if is_job_function(fn):
        return
    if isinstance(fn, type):
        kind = "a class"
    elif inspect.ismethod(fn) or inspect.isbuiltin(fn):
        kind = "a bound method"
    else:
        kind = f"an instance of {type(fn).__qualname__}"
    raise CorruptJobError(
        f"the job function {_shown(name)} is {kind}, not a function, so no worker calls "
        "it; a job names a module-level function (or a static method), as Job.from_func "
        "stores it"
    )


def check_runnable(job: QueuedJob, allowed: AllowedFunctions) -> None:
    """Raise unless a worker may run ``job`` as claimed, importing nothing.

    :class:`CorruptJobError` for a row that chancy could not have written (a ``func``
    that is not a dotted name, ``kwargs`` or ``meta`` that are not a JSON object, a
    timeout that is not a positive number); :class:`FunctionNotAllowedError` for a
    function ``allowed`` does not allow. Neither is retried: running the job again would
    meet the same row.
    """
    func: object = job.func
    if not isinstance(func, str) or DOTTED_NAME.fullmatch(func) is None:
        raise CorruptJobError(
            f"job {job.id}: its func {_shown(func)} is not a dotted name such as "
            "myapp.tasks.send_email, so no worker can run it; push jobs with "
            "Job.from_func(fn), which stores the function's importable name"
        )
    allowed.check(func)
    kwargs: object = job.kwargs
    if not isinstance(kwargs, Mapping):
        raise CorruptJobError(
            f"job {job.id}: its kwargs are a JSON {_json_type(kwargs)}, not an object of "
            "keyword arguments; push jobs with Job.from_func(fn, kwargs={...})"
        )
    meta: object = job.meta  # a job may read it, from the QueuedJob it asks for
    if not isinstance(meta, Mapping):
        raise CorruptJobError(
            f"job {job.id}: its meta is a JSON {_json_type(meta)}, not an object; set it "
            "with Job.with_meta({...})"
        )
    timeout: object = job.timeout
    if timeout is not None and not (
        isinstance(timeout, float | int) and math.isfinite(timeout) and timeout > 0
    ):
        raise CorruptJobError(
            f"job {job.id}: its timeout {timeout!r} is not a positive number of seconds; "
            "set it with Job.with_timeout(seconds)"
        )


def _normalised(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigurationError(
            f"allowed= pattern {pattern!r} is not a name pattern; use strings such as "
            "'myapp.tasks.*' or 'myapp.billing:charge'"
        )
    normalised = pattern.strip().replace(":", ".")
    if _PATTERN.fullmatch(normalised) is None:
        raise ConfigurationError(
            f"allowed= pattern {pattern!r} has characters no function name has; use dotted "
            "names with the wildcards * ? [...], such as 'myapp.tasks.*'"
        )
    return normalised


def _shown(value: object) -> str:
    """``repr(value)``, shortened: a stored row may hold anything, of any length."""
    text = repr(value)
    return text if len(text) <= _SHOWN_MAX else f"{text[: _SHOWN_MAX - 5]}...{text[-1]}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__
