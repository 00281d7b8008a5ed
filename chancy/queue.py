"""Queues: named lanes of jobs, each with the settings a worker runs it with."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Literal

from chancy.errors import InvalidQueueError

__all__ = [
    "CONCURRENCY_DEFAULT",
    "EXECUTOR_DEFAULT",
    "POLLING_INTERVAL_DEFAULT",
    "QUEUE_NAME_MAX_LENGTH",
    "RATE_PERIOD_MAX",
    "Queue",
    "QueueInfo",
    "validate_queue_name",
]

QUEUE_NAME_MAX_LENGTH = 64
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]+")

ExecutorName = Literal["asyncio", "threads", "processes"]
CONCURRENCY_DEFAULT = 1
EXECUTOR_DEFAULT: ExecutorName = "asyncio"
POLLING_INTERVAL_DEFAULT = 1.0
_EXECUTORS = ("asyncio", "threads", "processes")
RATE_PERIOD_MAX = timedelta(days=36525)
"""The longest rate period (100 years), of a queue or of a job's rate key: the claim
counts the starts since ``now - period``, which PostgreSQL must be able to compute."""
_INT32_MAX = 2**31 - 1  # the limits are stored (and the claim's batch sent) as integer


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a valid queue name, else raise :class:`InvalidQueueError`.

    A queue name has 1 to 64 characters from ``[A-Za-z0-9_.:-]``, so it is safe in
    notifications, log lines and command lines.
    """
    if not isinstance(name, str):
        raise InvalidQueueError(f"queue name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidQueueError("queue name is empty; give a name such as 'default'")
    if len(name) > QUEUE_NAME_MAX_LENGTH:
        raise InvalidQueueError(
            f"queue name {name[:20]!r}... is {len(name)} characters long; "
            f"use at most {QUEUE_NAME_MAX_LENGTH}"
        )
    if not _QUEUE_NAME.fullmatch(name):
        bad = sorted({c for c in name if not _QUEUE_NAME.fullmatch(c)})
        raise InvalidQueueError(
            f"queue name {name!r} contains {''.join(bad)!r}; "
            "use only letters, digits and '_', '-', '.', ':'"
        )
    return name


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    """How a worker runs one queue.

    ``concurrency`` is the most jobs of this queue one worker runs at once (default 1).
    ``executor`` runs them: ``"asyncio"`` (coroutines on the worker's loop, sync functions
    in a thread; the default), ``"threads"`` or ``"processes"``. ``polling_interval`` is
    how many seconds an idle worker waits before looking again when no notification came.
    ``rate_limit`` jobs per ``rate_period`` caps how many jobs start across all workers,
    and ``global_concurrency`` how many run at once across all workers; both are stored
    with the queue in the database when the queue is declared, and enforced by the claim.
    A Queue states its limits: declaring it stores them, None meaning no limit (the last
    declaration wins). With ``declare_limits=False`` it states none: declaring it only
    makes sure the queue exists and leaves the stored limits as they are, as declaring a
    queue by its name does (for an app that pushes to a queue another app limits).
    ``memory_limit`` (bytes) caps the address space of each child process of the
    ``"processes"`` executor.
    """

    name: str
    concurrency: int = CONCURRENCY_DEFAULT
    executor: ExecutorName = EXECUTOR_DEFAULT
    polling_interval: float = POLLING_INTERVAL_DEFAULT
    rate_limit: int | None = None
    rate_period: timedelta = timedelta(seconds=1)
    global_concurrency: int | None = None
    memory_limit: int | None = None
    declare_limits: bool = True

    def __post_init__(self) -> None:
        validate_queue_name(self.name)
        _check_count(self.name, "concurrency", self.concurrency, optional=False)
        if self.executor not in _EXECUTORS:
            raise InvalidQueueError(
                f"queue {self.name!r}: unknown executor {self.executor!r}; "
                f"use one of {', '.join(_EXECUTORS)}"
            )
        if not self.polling_interval > 0:
            raise InvalidQueueError(
                f"queue {self.name!r}: polling_interval must be a positive number of seconds"
            )
        _check_count(self.name, "global_concurrency", self.global_concurrency, optional=True)
        _check_count(self.name, "rate_limit", self.rate_limit, optional=True)
        if not isinstance(self.rate_period, timedelta) or not self.rate_period.total_seconds() > 0:
            raise InvalidQueueError(
                f"queue {self.name!r}: rate_period must be a positive timedelta"
            )
        if self.rate_period > RATE_PERIOD_MAX:
            raise InvalidQueueError(
                f"queue {self.name!r}: rate_period is {self.rate_period}; use at most "
                f"{RATE_PERIOD_MAX.days} days"
            )
        if not self.declare_limits and (
            self.global_concurrency is not None or self.rate_limit is not None
        ):
            raise InvalidQueueError(
                f"queue {self.name!r}: global_concurrency and rate_limit are never stored "
                "with declare_limits=False; drop them, or drop declare_limits=False"
            )

    @classmethod
    def named(cls, name: str) -> Queue:
        """The queue ``name`` with the default settings, stating no limits: what a name
        declares (``chancy.declare("name")``, ``chancy queue declare``, ``worker -q``)."""
        return cls(name=name, declare_limits=False)


def _check_count(queue: str, what: str, value: object, *, optional: bool) -> None:
    """``value`` must be an int from 1 to 2**31 - 1 (what PostgreSQL's integer holds), or
    None when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _INT32_MAX:
        hint = ", or None" if optional else ""
        raise InvalidQueueError(
            f"queue {queue!r}: {what} is {value!r}; use an int from 1 to {_INT32_MAX}{hint}"
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueueInfo:
    """A declared queue as the database holds it (what :meth:`Chancy.list_queues` returns).

    ``paused`` is true while workers claim none of its jobs: from a pause until a resume,
    or until ``resume_at`` when the pause had one.
    """

    name: str
    paused: bool
    resume_at: datetime | None
    global_concurrency: int | None
    rate_limit: int | None
    rate_period: float | None
    keyed: bool

    @property
    def limited(self) -> bool:
        """Whether claims from this queue must count what runs and starts cluster-wide."""
        return self.global_concurrency is not None or self.rate_limit is not None or self.keyed
