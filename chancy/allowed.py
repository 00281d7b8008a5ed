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

A function renamed (or moved) while jobs stored under its old name wait is reached through
an alias, from the name a job stores to the name to run::

    Chancy(dsn, aliases={"myapp.old_name": "myapp.tasks.new_name"})
    chancy worker --app myapp:chancy --alias myapp.old_name=myapp.tasks.new_name

The worker runs the new function for a job that names the old one, and the patterns apply
to the new name (the one imported and run), never to the old. Aliases are not followed
from one to the next: point each old name at the function's current name.

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
from types import MappingProxyType
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
    function at all when there are none; and ``aliases``, pairs of a name jobs store and
    the name of the function to run for it. Build it with :meth:`of`, which checks and
    normalises both. Pickles (the ``processes`` executor sends it to its children)."""

    patterns: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    _regex: re.Pattern[str] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    _targets: dict[str, str] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.patterns:
            joined = "|".join(f"(?:{fnmatch.translate(p)})" for p in self.patterns)
            object.__setattr__(self, "_regex", re.compile(joined))
        object.__setattr__(self, "_targets", dict(self.aliases))

    @classmethod
    def of(
        cls,
        patterns: AllowedFunctions | Iterable[str] | None,
        *,
        aliases: Mapping[str, str] | None = None,
    ) -> AllowedFunctions:
        """The allowed functions of an ``allowed=`` setting (a list of patterns, or None),
        with the ``aliases=`` setting (old name to new name, or None)."""
        if isinstance(patterns, AllowedFunctions):
            allowed = patterns
        elif patterns is None:
            allowed = UNRESTRICTED
        elif isinstance(patterns, str | bytes):
            raise ConfigurationError(
                f"allowed= takes a list of patterns, not one string; write allowed=[{patterns!r}]"
            )
        else:
            allowed = cls(tuple(dict.fromkeys(_normalised(pattern) for pattern in patterns)))
        return allowed.with_aliases(aliases) if aliases else allowed

    def with_aliases(self, aliases: Mapping[str, str]) -> AllowedFunctions:
        """A copy with ``aliases`` (old name to new name) added to its own; an old name
        given again points where ``aliases`` says."""
        merged = {**self._targets, **_checked_aliases(aliases)}
        _check_no_chain(merged)
        return dataclasses.replace(self, aliases=tuple(merged.items()))

    @property
    def unrestricted(self) -> bool:
        """True when no pattern is set: any importable function may run."""
        return self._regex is None

    def target(self, name: str) -> str:
        """The name of the function to run for a job that stores ``name``: its alias's
        new name, else ``name`` itself."""
        return self._targets.get(name, name)

    def allows(self, name: str) -> bool:
        """Whether a function named ``name`` may run (``name`` as imported: aliases are
        resolved before, see :meth:`check`)."""
        return self._regex is None or self._regex.match(name) is not None

    def check(self, name: str) -> None:
        """Raise :class:`FunctionNotAllowedError` unless a job storing ``name`` may run
        (the function its alias names, if any); imports nothing."""
        target = self.target(name)
        if not self.allows(target):
            shown = _shown(target)
            if target != name:
                shown += f" (the alias of {_shown(name)}, which the job stores)"
            raise FunctionNotAllowedError(
                f"the job function {shown} is not allowed in this worker: it matches "
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


def _is_mapping(value: object) -> bool:
    # A stored object is mapped to a MappingProxyType (chancy.jobs): checked first, as an
    # isinstance() against the Mapping ABC costs microseconds per job.
    return type(value) is MappingProxyType or isinstance(value, Mapping)


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
    if not _is_mapping(kwargs):
        raise CorruptJobError(
            f"job {job.id}: its kwargs are a JSON {_json_type(kwargs)}, not an object of "
            "keyword arguments; push jobs with Job.from_func(fn, kwargs={...})"
        )
    meta: object = job.meta  # a job may read it, from the QueuedJob it asks for
    if not _is_mapping(meta):
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


def _checked_aliases(aliases: object) -> dict[str, str]:
    """``aliases=`` as a dict of normalised dotted names, or :class:`ConfigurationError`."""
    if not isinstance(aliases, Mapping):
        raise ConfigurationError(
            f"aliases= takes a mapping of old names to new ones, not {type(aliases).__name__}; "
            "write aliases={'myapp.old_name': 'myapp.tasks.new_name'}"
        )
    checked: dict[str, str] = {}
    for old, new in aliases.items():
        old_name, new_name = _alias_name(old), _alias_name(new)
        if old_name == new_name:
            raise ConfigurationError(f"the alias {old!r} points at itself; remove it")
        checked[old_name] = new_name
    return checked


def _alias_name(name: object) -> str:
    normalised = name.strip().replace(":", ".") if isinstance(name, str) else None
    if normalised is None or DOTTED_NAME.fullmatch(normalised) is None:
        raise ConfigurationError(
            f"aliases= name {_shown(name)} is not a function's dotted name; write "
            "aliases={'myapp.old_name': 'myapp.tasks.new_name'} (module.function)"
        )
    return normalised


def _check_no_chain(aliases: Mapping[str, str]) -> None:
    for old, new in aliases.items():
        if new in aliases:
            raise ConfigurationError(
                f"the alias {old!r} points at {new!r}, itself an alias of "
                f"{aliases[new]!r}; aliases are not followed from one to the next: point "
                f"{old!r} at {aliases[new]!r}"
            )


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
