"""Turning how a run ended into the :class:`~chancy.repository.Outcome` to store.

A job that returned succeeds with its return value as ``result`` (it must be JSON). A job
that raised is retried while it has attempts left, after an exponential backoff with
jitter (``Job.with_backoff`` sets the first delay, default 1 s, doubled per attempt, at
most an hour); after its last attempt it fails. Every failed attempt's error is kept.
A job the worker refused to run (its function is not allowed, or its row is corrupt) fails
at once, whatever attempts it has left: running it again would be refused again; so does a
job that tried to exit the worker (:class:`~chancy.executor.base.JobExitError`), and one
whose stored kwargs no longer fit its function's types
(:class:`~chancy.errors.IncompatiblePayloadError`: they would not fit on a retry either).

A job whose function the worker cannot import
(:class:`~chancy.errors.FunctionNotImportableError`: a worker started in the wrong
directory, a module not deployed yet) is deferred, not failed: it goes back to
``scheduled`` without using an attempt, for a worker that can import it, with an error
marked ``"deferred": true``. It comes back after 10 s, doubled per deferral, at most 5
minutes (±25 %); after :data:`DEFERRALS_MAX` deferrals (about 80 minutes) it fails, so
that a function no worker has can never keep a job going round forever.

A job that raised :class:`~chancy.control.Snooze` goes back to ``scheduled``, due after
the seconds it asked for, without using an attempt (:func:`snooze`), unless it snoozed
``max_snoozes`` times already: then it fails, saying so. One that raised
:class:`~chancy.control.Cancel` ends ``cancelled`` with its reason, never retried.

Every outcome made here can be stored: PostgreSQL's ``jsonb`` refuses a NUL character and
a lone surrogate (``os.fsdecode(b"\\xff")``), so a result holding one fails its job
saying so, and an error's texts are stored with them escaped (``\\x00``, ``\\udcff``).
Nothing here raises, whatever the job returned or raised: an outcome rejected by the
database would otherwise hold back every outcome written with it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

from chancy.control import Cancel, JobControl, Snooze
from chancy.errors import (
    CorruptJobError,
    FunctionNotAllowedError,
    FunctionNotImportableError,
    IncompatiblePayloadError,
)
from chancy.executor.base import JobExitError, RemoteJobError, describe_exception
from chancy.jobs import QueuedJob, json_text
from chancy.repository import Outcome
from chancy.states import JobState

__all__ = [
    "DEFERRALS_MAX",
    "DEFERRAL_DELAY_FIRST",
    "DEFERRAL_DELAY_MAX",
    "LOGGED_TEXT_MAX",
    "RETRY_BACKOFF_DEFAULT",
    "RETRY_BACKOFF_MAX",
    "deferrals",
    "failure",
    "is_final",
    "is_not_importable",
    "is_refusal",
    "loggable",
    "retry_delay",
    "snooze",
    "storable_text",
    "success",
    "unrecorded",
]

RETRY_BACKOFF_DEFAULT = 1.0
RETRY_BACKOFF_MAX = 3600.0
RETRY_JITTER = 0.25
DEFERRAL_DELAY_FIRST = 10.0
DEFERRAL_DELAY_MAX = 300.0
DEFERRALS_MAX = 20
"""How many times a job is deferred (its function not importable) before it fails."""
REFUSALS = (FunctionNotAllowedError, CorruptJobError)
"""Errors of jobs a worker refused to run; never retried."""
_REFUSAL_NAMES = frozenset(error.__qualname__ for error in REFUSALS)
FINAL = (*REFUSALS, JobExitError, IncompatiblePayloadError)
"""Errors of jobs that fail at once, never retried."""
_FINAL_NAMES = frozenset(error.__qualname__ for error in FINAL)
# 2 ** 64 times any backoff is past the cap: a larger exponent only risks an overflow.
_BACKOFF_EXPONENT_MAX = 64
# In JSON text (ASCII, as json.dumps writes it), where a NUL or a surrogate may hide.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def success(job: QueuedJob, result: Any) -> Outcome:
    """The outcome of a run that returned ``result``; a result that cannot be stored (not
    JSON, or holding what ``jsonb`` refuses) fails the job, without a retry: it would not
    become storable by running again."""
    if result is None:
        return _outcome(job, JobState.SUCCEEDED)
    kind = type(result).__name__
    try:
        text = json_text(result)
    except RecursionError:
        return _unstorable(job, f"the job returned a {kind} nested too deeply to store as JSON")
    except (TypeError, ValueError) as exc:
        return _unstorable(
            job,
            f"the job returned a {kind}, which cannot be stored as JSON "
            f"({exc}); return str, int, float, bool, None, or lists and dicts of them",
        )
    problem = _jsonb_problem(text, result)
    if problem is not None:
        return _unstorable(
            job,
            f"the job returned a {kind} holding {problem}, which PostgreSQL cannot store "
            "in JSON; return text without it (bytes as base64 or hex, say)",
        )
    return Outcome(
        job.id,
        job.fence,
        JobState.SUCCEEDED,
        result=json.loads(text),
        result_json=text,
        attempt=job.attempts,
    )


def _outcome(
    job: QueuedJob,
    state: JobState,
    *,
    error: Mapping[str, Any] | None = None,
    retry_in: float | None = None,
) -> Outcome:
    """The outcome of ``job``'s attempt, fenced by its token."""
    return Outcome(job.id, job.fence, state, error=error, retry_in=retry_in, attempt=job.attempts)


def _unstorable(job: QueuedJob, message: str) -> Outcome:
    error = {"attempt": job.attempts, "type": "ResultNotJSON", "message": message}
    return _outcome(job, JobState.FAILED, error=error)


def _jsonb_problem(text: str, value: Any) -> str | None:
    """What in ``value`` (written as ``text``) PostgreSQL's ``jsonb`` refuses, if anything:
    a NUL character or a lone surrogate, in a string or a key. ``text`` is ASCII, so both
    can only be escapes: the value is searched only when one may be there."""
    if _SUSPECT_ESCAPE.search(text) is None:
        return None
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem is not None:
                return problem
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character (\\x00)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (text decoded with errors='surrogateescape', say)"
    return None


def storable_text(text: str) -> str:
    """``text`` with what ``jsonb`` refuses escaped: a NUL as ``\\x00``, a lone
    surrogate as ``\\udcff``."""
    if _text_problem(text) is None:
        return text
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


LOGGED_TEXT_MAX = 500
"""The most characters of a job's own text (a cancel's reason) a log line quotes."""


def loggable(text: object) -> str:
    """A job's own text for a log line: NUL and lone surrogates escaped (a log handler
    writing UTF-8 would fail on them), cut at :data:`LOGGED_TEXT_MAX` characters."""
    shown = storable_text(str(text))
    if len(shown) > LOGGED_TEXT_MAX:
        return shown[:LOGGED_TEXT_MAX] + f"... ({len(shown):,} characters)"
    return shown


def failure(job: QueuedJob, exc: BaseException, *, worker_id: str | None = None) -> Outcome:
    """The outcome of a run that raised ``exc``: a retry if attempts remain, else failed;
    failed at once if the job must not run again (:func:`is_final`); deferred, without
    using the attempt, if the worker could not import its function
    (:func:`is_not_importable`)."""
    if isinstance(exc, JobControl):
        return _controlled(job, exc)
    error: dict[str, Any] = {"attempt": job.attempts, **describe_exception(exc)}
    if worker_id is not None:
        error["worker"] = worker_id
    if is_not_importable(exc):
        return _deferral(job, error)
    error = {key: _storable(value) for key, value in error.items()}
    if job.attempts < job.max_attempts and not is_final(exc):
        return _outcome(job, JobState.RETRYING, error=error, retry_in=retry_delay(job))
    return _outcome(job, JobState.FAILED, error=error)


def _controlled(job: QueuedJob, control: JobControl) -> Outcome:
    """The outcome a :class:`~chancy.control.JobControl` the job raised asks for."""
    if isinstance(control, Snooze):
        return snooze(job, control.seconds)
    reason = control.reason if isinstance(control, Cancel) else str(control)
    error = {"attempt": job.attempts, "type": "Cancel", "message": reason}
    return _outcome(job, JobState.CANCELLED, error=_storable(error))


def snooze(job: QueuedJob, seconds: float) -> Outcome:
    """``job`` back to ``scheduled`` in ``seconds``, its attempt given back; failed if
    it snoozed ``max_snoozes`` times already (a job snoozing in a loop ends)."""
    if job.snoozes >= job.max_snoozes:
        message = (
            f"the job raised Snooze after it had snoozed {job.snoozes} times, its limit "
            f"(max_snoozes={job.max_snoozes}); if it must wait longer, raise the limit "
            "with Job.with_max_snoozes(n), or snooze for longer each time"
        )
        error = {"attempt": job.attempts, "type": "TooManySnoozes", "message": message}
        return _outcome(job, JobState.FAILED, error=error)
    return Outcome(
        job.id,
        job.fence,
        JobState.SCHEDULED,
        retry_in=seconds,
        attempt=job.attempts,
        snoozed=True,
    )


def _deferral(job: QueuedJob, error: dict[str, Any]) -> Outcome:
    """``job`` back to ``scheduled`` without using its attempt, for a worker that can
    import its function; failed once it was deferred :data:`DEFERRALS_MAX` times."""
    count = deferrals(job)
    if count >= DEFERRALS_MAX:
        error["message"] = (
            f"no worker could import the job's function after it was deferred {count} times; "
            f"{error.get('message', '')}"
        )
        error = {key: _storable(value) for key, value in error.items()}
        return _outcome(job, JobState.FAILED, error=error)
    error["deferred"] = True
    error = {key: _storable(value) for key, value in error.items()}
    delay = min(DEFERRAL_DELAY_FIRST * 2.0 ** min(count, _BACKOFF_EXPONENT_MAX), DEFERRAL_DELAY_MAX)
    retry_in = float(delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
    return _outcome(job, JobState.SCHEDULED, error=error, retry_in=retry_in)


def deferrals(job: QueuedJob) -> int:
    """How many times ``job`` was deferred: its errors marked ``"deferred": true``."""
    errors: object = job.errors
    if not isinstance(errors, tuple | list):
        return 0
    return sum(
        1 for error in errors if isinstance(error, Mapping) and error.get("deferred") is True
    )


def unrecorded(job: QueuedJob, exc: BaseException) -> Outcome:
    """The outcome of a run whose own outcome could not be made (``exc`` says why): the job
    fails, so that its attempt ends with an outcome all the same."""
    message = (
        f"chancy could not record how the job ended ({type(exc).__qualname__}); "
        "please report this as a bug in chancy"
    )
    error = {"attempt": job.attempts, "type": "OutcomeError", "message": message}
    return _outcome(job, JobState.FAILED, error=_storable(error))


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): _storable(item) for key, item in value.items()}
    return value


def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` says the job must not run (so must not be retried), also when it
    comes back from a child process of the ``processes`` executor."""
    if isinstance(exc, RemoteJobError):
        return exc.type_name in _REFUSAL_NAMES
    return isinstance(exc, REFUSALS)


def is_not_importable(exc: BaseException) -> bool:
    """Whether ``exc`` says the worker could not import the job's function (a problem of
    the worker's deployment, not of the job), also from a child process."""
    if isinstance(exc, RemoteJobError):
        return exc.type_name == FunctionNotImportableError.__qualname__
    return isinstance(exc, FunctionNotImportableError)


def is_final(exc: BaseException) -> bool:
    """Whether a job that raised ``exc`` fails at once, never retried: it was refused
    (:func:`is_refusal`), tried to exit the worker, or its stored kwargs no longer fit."""
    if isinstance(exc, RemoteJobError):
        return exc.type_name in _FINAL_NAMES
    return isinstance(exc, FINAL)


def retry_delay(job: QueuedJob) -> float:
    """Seconds before the next attempt: ``backoff * 2 ** (attempts - 1)``, capped, ±25 %."""
    base = RETRY_BACKOFF_DEFAULT if job.backoff is None else job.backoff
    exponent = min(max(job.attempts - 1, 0), _BACKOFF_EXPONENT_MAX)
    delay = min(base * 2.0**exponent, RETRY_BACKOFF_MAX)
    return float(delay * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER))
