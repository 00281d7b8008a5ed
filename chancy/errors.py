"""The errors chancy raises.

Every error is a :class:`ChancyError`, so ``except ChancyError`` catches all of them::

    ChancyError
     ├── InvalidJobError            a Job that could never run (raised by Job.from_func / with_*)
     │    ├── InvalidFunctionError   fn is not importable by name (lambda, closure, method, ...)
     │    └── InvalidKwargsError     kwargs are not JSON, or do not fit fn's signature
     ├── InvalidQueueError          a queue name or Queue setting that is not allowed
     ├── ConfigurationError         chancy cannot find or use a database
     │    └── DatabaseUnavailableError   the server did not answer (names host and port only)
     └── SchemaError                the database schema does not match this version of chancy

Each message names the problem and how to fix it. No message ever contains a password.
"""

from __future__ import annotations

__all__ = [
    "ChancyError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "InvalidFunctionError",
    "InvalidJobError",
    "InvalidKwargsError",
    "InvalidQueueError",
    "SchemaError",
]


class ChancyError(Exception):
    """Something went wrong in chancy."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or " ".join((self.__doc__ or "").split()))


class InvalidJobError(ChancyError, ValueError):
    """This job could never run; fix the arguments given to Job.from_func or Job.with_*."""


class InvalidFunctionError(InvalidJobError):
    """A job's function must be a module-level function that a worker can import by name."""


class InvalidKwargsError(InvalidJobError):
    """A job's kwargs must be a JSON object whose keys match the function's parameters."""


class InvalidQueueError(ChancyError, ValueError):
    """Queue names use 1 to 64 letters, digits and the characters '_', '-', '.', ':'."""


class ConfigurationError(ChancyError):
    """Chancy has no database to use: pass dsn= or engine=, or set CHANCY_DSN."""


class DatabaseUnavailableError(ConfigurationError):
    """The PostgreSQL server did not answer; check that it runs and that the DSN is right."""


class SchemaError(ChancyError):
    """The database schema is behind this version of chancy: run `await chancy.migrate()`
    or `chancy migrate` (or `alembic upgrade head`)."""
