"""chancy: a PostgreSQL job queue for Python, built on SQLAlchemy 2, asyncpg and Alembic."""

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.errors import (
    ChancyError,
    ConfigurationError,
    CorruptJobError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    FunctionNotAllowedError,
    InvalidFunctionError,
    InvalidJobError,
    InvalidKwargsError,
    InvalidQueueError,
    LockTimeoutError,
    PermissionDeniedError,
    SchemaError,
    StatementTimeoutError,
    UnknownQueueError,
)
from chancy.executor import Job, QueuedJob, Reference
from chancy.queue import Queue, QueueInfo
from chancy.states import JobState
from chancy.worker import Worker

__all__ = [
    "Chancy",
    "ChancyError",
    "ConfigurationError",
    "CorruptJobError",
    "Cron",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "FunctionNotAllowedError",
    "InvalidFunctionError",
    "InvalidJobError",
    "InvalidKwargsError",
    "InvalidQueueError",
    "Job",
    "JobState",
    "LockTimeoutError",
    "PermissionDeniedError",
    "Queue",
    "QueueInfo",
    "QueuedJob",
    "Reference",
    "SchemaError",
    "StatementTimeoutError",
    "UnknownQueueError",
    "Worker",
]
