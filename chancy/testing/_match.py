"""Which stored jobs match what a test asks for, and the message when none does.

Shared by the async helpers (:mod:`chancy.testing`) and their sync twins
(:mod:`chancy.testing.sync`): the reading differs, the judging does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chancy.callables import name_of
from chancy.errors import ChancyError, InvalidKwargsError
from chancy.jobs import QueuedJob, frozen_json_object, json_text
from chancy.repository import JobFilters
from chancy.states import JobState

__all__ = ["JOBS_READ_MAX", "Filters", "missing_message", "unexpected_message"]

JOBS_READ_MAX = 10_000
"""The newest jobs a failed assertion ranks for its message (the matching itself reads
every job, in SQL)."""
_SHOWN_JOBS = 10
_VALUE_SHOWN_MAX = 120


@dataclasses.dataclass(frozen=True, slots=True)
class Filters:
    """What a test asks of a pushed job; None: anything. ``kwargs`` matches as a subset:
    only the keys given are compared (after a JSON round trip, as the job stores them)."""

    func: str | None = None
    kwargs: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    state: str | None = None

    @classmethod
    def of(
        cls,
        *,
        func: Callable[..., Any] | str | None,
        kwargs: Mapping[str, Any] | None,
        queue: str | None,
        priority: int | None,
        state: JobState | str | None,
    ) -> Filters:
        """Checked filters: a function becomes its stored name, kwargs their JSON form."""
        name = func if func is None or isinstance(func, str) else name_of(func)
        if kwargs is not None:
            if not isinstance(kwargs, Mapping):
                raise ChancyError(f"kwargs= takes a mapping of the keys to compare, not {kwargs!r}")
            kwargs = dict(frozen_json_object(kwargs, "kwargs=", InvalidKwargsError))
        if queue is not None and not isinstance(queue, str):
            raise ChancyError(f"queue= takes a queue's name, not {queue!r}")
        if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
            raise ChancyError(f"priority= takes a job's priority (an int), not {priority!r}")
        if state is not None:
            try:
                state = JobState(state).value
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise ChancyError(f"state={state!r} is not a job state; one of {known}") from None
        return cls(func=name, kwargs=kwargs, queue=queue, priority=priority, state=state)

    def query(self) -> JobFilters:
        """The filters as the statement that reads the matching jobs takes them."""
        kwargs = None if self.kwargs is None else json_text(self.kwargs)
        return JobFilters(self.func, self.queue, self.priority, self.state, kwargs)

    def differences(self, job: QueuedJob) -> dict[str, tuple[Any, Any]]:
        """What differs between the filters and ``job``: field (``kwargs.<key>`` for a
        key of kwargs) to (wanted, found)."""
        found: dict[str, tuple[Any, Any]] = {}
        for name in ("func", "queue", "priority", "state"):
            wanted = getattr(self, name)
            value = str(job.state) if name == "state" else getattr(job, name)
            if wanted is not None and wanted != value:
                found[name] = (wanted, value)
        for key, wanted in (self.kwargs or {}).items():
            value = job.kwargs.get(key, _MISSING)
            if value is _MISSING or not same_json(value, wanted):
                found[f"kwargs.{key}"] = (wanted, value)
        return found

    def matches(self, job: QueuedJob) -> bool:
        """Whether ``job`` is what the filters ask for."""
        return not self.differences(job)

    def describe(self) -> str:
        """The filters as the test gave them, for a message."""
        given = {
            name: getattr(self, name)
            for name in ("func", "kwargs", "queue", "priority", "state")
            if getattr(self, name) is not None
        }
        if not given:
            return "any job"
        return ", ".join(f"{name}={_shown(value)}" for name, value in given.items())


def same_json(first: Any, second: Any) -> bool:
    """Whether two decoded JSON values are equal as PostgreSQL's jsonb compares them:
    numbers by value (1 equals 1.0), but a boolean is no number (true is not 1)."""
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(
            same_json(item, second[key]) for key, item in first.items()
        )
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(map(same_json, first, second))
    return bool(first == second)


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


def missing_message(
    jobs: Sequence[QueuedJob], total: int, filters: Filters, matched: int, count: int | None
) -> str:
    """Why ``assert_pushed`` failed: what was asked, then what was pushed (``jobs``: the
    newest of the ``total``), the closest candidates first, each with the keys that
    differ."""
    if count is not None and matched:
        head = f"expected {_jobs(count)} matching {filters.describe()}, found {matched}"
    else:
        head = f"no job matching {filters.describe()} was pushed"
    if not jobs:
        return f"{head}; no job was pushed at all (in this transaction, or committed)"
    ranked = sorted(jobs, key=lambda job: (len(filters.differences(job)), -job.id))
    among = "" if total <= len(jobs) else f" of the newest {len(jobs)}"
    lines = [f"{head}; pushed ({_jobs(total)}, closest{among} first):"]
    for job in ranked[:_SHOWN_JOBS]:
        lines.append(f"  {_describe_job(job)}")
        differences = filters.differences(job)
        if differences:
            lines.append(
                "      differs: "
                + "; ".join(
                    f"{name}: wanted {_shown(wanted)}, got {_shown(got)}"
                    for name, (wanted, got) in differences.items()
                )
            )
    if total > _SHOWN_JOBS:
        lines.append(f"  ... and {total - _SHOWN_JOBS} more")
    return "\n".join(lines)


def unexpected_message(matched: Sequence[QueuedJob], filters: Filters) -> str:
    """Why ``refute_pushed`` failed: the jobs that match."""
    lines = [f"expected no job matching {filters.describe()}, found {len(matched)}:"]
    lines.extend(f"  {_describe_job(job)}" for job in matched[:_SHOWN_JOBS])
    if len(matched) > _SHOWN_JOBS:
        lines.append(f"  ... and {len(matched) - _SHOWN_JOBS} more")
    return "\n".join(lines)


def _describe_job(job: QueuedJob) -> str:
    return (
        f"job {job.id}: func={job.func!r} kwargs={_shown(dict(job.kwargs))} "
        f"queue={job.queue!r} priority={job.priority} state={job.state.value!r}"
    )


def _jobs(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def _shown(value: Any) -> str:
    text = repr(dict(value) if isinstance(value, Mapping) else value)
    if len(text) <= _VALUE_SHOWN_MAX:
        return text
    return f"{text[: _VALUE_SHOWN_MAX - 3]}..."
