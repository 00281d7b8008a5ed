"""chancy: a PostgreSQL job queue for Python, built on SQLAlchemy 2, asyncpg and Alembic."""

from chancy.app import Chancy
from chancy.errors import (
    ChancyError,
    ConfigurationError,
    DatabaseUnavailableError,
    InvalidFunctionError,
    InvalidJobError,
    InvalidKwargsError,
    InvalidQueueError,
    SchemaError,
)
from chancy.executor import Job, QueuedJob, Reference
from chancy.queue import Queue
from chancy.states import JobState
from chancy.worker import Worker

__all__ = [
    "Chancy",
    "ChancyError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "InvalidFunctionError",
    "InvalidJobError",
    "InvalidKwargsError",
    "InvalidQueueError",
    "Job",
    "JobState",
    "Queue",
    "QueuedJob",
    "Reference",
    "SchemaError",
    "Worker",
]
