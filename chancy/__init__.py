"""chancy: a PostgreSQL job queue for Python, built on SQLAlchemy 2, asyncpg and Alembic.

The names below are imported on first use (PEP 562), so importing one of chancy's lower
modules (``chancy.jobs``, ``chancy.repository``) does not load the worker and its
executors.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from chancy.control import Cancel, Snooze
from chancy.errors import (
    ChancyError,
    ConfigurationError,
    CorruptJobError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    FunctionNotAllowedError,
    IncompatiblePayloadError,
    InvalidFunctionError,
    InvalidJobError,
    InvalidKwargsError,
    InvalidQueueError,
    JobNotRunningError,
    LockTimeoutError,
    PermissionDeniedError,
    SchemaError,
    StatementTimeoutError,
    UnknownQueueError,
)
from chancy.jobs import Job, QueuedJob, Reference
from chancy.queue import Queue, QueueInfo
from chancy.states import JobState

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.context import JobContext
    from chancy.cron import Cron
    from chancy.worker import Worker

__all__ = [
    "Cancel",
    "Chancy",
    "ChancyError",
    "ConfigurationError",
    "CorruptJobError",
    "Cron",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "FunctionNotAllowedError",
    "IncompatiblePayloadError",
    "InvalidFunctionError",
    "InvalidJobError",
    "InvalidKwargsError",
    "InvalidQueueError",
    "Job",
    "JobContext",
    "JobNotRunningError",
    "JobState",
    "LockTimeoutError",
    "PermissionDeniedError",
    "Queue",
    "QueueInfo",
    "QueuedJob",
    "Reference",
    "SchemaError",
    "Snooze",
    "StatementTimeoutError",
    "UnknownQueueError",
    "Worker",
]

# The names whose modules load the database layer, the worker or its executors.
_LAZY = {
    "Chancy": "chancy.app",
    "Cron": "chancy.cron",
    "JobContext": "chancy.context",
    "Worker": "chancy.worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif importlib.util.find_spec(f"chancy.{name}") is not None:
        value = importlib.import_module(f"chancy.{name}")  # `chancy.worker.Worker` and such
    else:
        raise AttributeError(f"module 'chancy' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
