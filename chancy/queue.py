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

    def __post_init__(self) -> None:
        validate_queue_name(self.name)
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise InvalidQueueError(f"queue {self.name!r}: concurrency must be an int")
        if self.concurrency < 1:
            raise InvalidQueueError(
                f"queue {self.name!r}: concurrency is {self.concurrency}; use 1 or more"
            )
        if self.executor not in _EXECUTORS:
            raise InvalidQueueError(
                f"queue {self.name!r}: unknown executor {self.executor!r}; "
                f"use one of {', '.join(_EXECUTORS)}"
            )
        if not self.polling_interval > 0:
            raise InvalidQueueError(
                f"queue {self.name!r}: polling_interval must be a positive number of seconds"
            )
        if self.global_concurrency is not None and (
            isinstance(self.global_concurrency, bool)
            or not isinstance(self.global_concurrency, int)
            or self.global_concurrency < 1
        ):
            raise InvalidQueueError(
                f"queue {self.name!r}: global_concurrency is {self.global_concurrency!r}; "
                "use an int of 1 or more, or None"
            )
        if not self.rate_period.total_seconds() > 0:
            raise InvalidQueueError(f"queue {self.name!r}: rate_period must be positive")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise InvalidQueueError(
                f"queue {self.name!r}: rate_limit is {self.rate_limit}; use 1 or more, or None"
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
