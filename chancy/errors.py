"""The errors chancy raises.

Every error is a :class:`ChancyError`, so ``except ChancyError`` catches all of them::

    ChancyError
     ├── InvalidJobError            a Job that could never run (raised by Job.from_func / with_*)
     │    ├── InvalidFunctionError   fn is not importable by name (lambda, closure, method, ...)
     │    └── InvalidKwargsError     kwargs are not JSON, or do not fit fn's signature
     ├── InvalidQueueError          a queue name or Queue setting that is not allowed
     │    ├── UnknownQueueError      a push to a queue that was never declared
     │    └── QueueNotEmptyError     a queue deletion refused: the queue still has jobs
     ├── ConfigurationError         chancy cannot find or use a database, or a setting is wrong
     │    ├── DatabaseUnavailableError   the server did not answer (names host and port only)
     │    └── PermissionDeniedError      the database role lacks a privilege chancy needs
     ├── SchemaError                the database schema does not match this version of chancy
     ├── DatabaseTimeoutError       a statement of chancy's was cancelled by a timeout
     │    ├── LockTimeoutError       it waited longer than lock_timeout for another's lock
     │    └── StatementTimeoutError  it ran longer than statement_timeout
     ├── FunctionNotAllowedError    a worker refused a job whose function allowed= does not allow
     ├── FunctionNotImportableError a worker cannot import a job's function (its deployment)
     ├── IncompatiblePayloadError   a job's stored kwargs no longer fit its function's types
     ├── UniqueKeyHeldError         a retry refused: an unfinished job holds the job's unique key
     ├── JobNotRunningError         JobContext.complete_in: the attempt no longer holds its job
     ├── InvalidWorkflowError       a Workflow that could never run (a duplicate step, a cycle, ...)
     ├── UnknownWorkflowError       no workflow has that id (never pushed, or pruned)
     └── CorruptJobError            a stored row is not a job chancy could have written

Each message names the problem and how to fix it. No message ever contains a password.
"""

from __future__ import annotations

__all__ = [
    "ChancyError",
    "ConfigurationError",
    "CorruptJobError",
    "DatabaseTimeoutError",
    "DatabaseUnavailableError",
    "FunctionNotAllowedError",
    "FunctionNotImportableError",
    "IncompatiblePayloadError",
    "InvalidFunctionError",
    "InvalidJobError",
    "InvalidKwargsError",
    "InvalidQueueError",
    "InvalidWorkflowError",
    "JobNotRunningError",
    "LockTimeoutError",
    "PermissionDeniedError",
    "QueueNotEmptyError",
    "ResultNotStorableError",
    "SchemaError",
    "StatementTimeoutError",
    "UniqueKeyHeldError",
    "UnknownQueueError",
    "UnknownWorkflowError",
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


class UnknownQueueError(InvalidQueueError):
    """A job's queue must be declared first: list it in Chancy(queues=[...]), call
    `await chancy.declare(Queue(name=...))`, or push with declare=True."""


class QueueNotEmptyError(InvalidQueueError):
    """A queue is deleted only once it has no jobs: let them finish and delete them, or
    delete the queue with force=True (`chancy queue delete NAME --force`), which deletes
    its jobs too; neither deletes a queue while one of its jobs runs."""


class ConfigurationError(ChancyError):
    """Chancy has no database to use: pass dsn= or engine=, or set CHANCY_DSN."""


class DatabaseUnavailableError(ConfigurationError):
    """The PostgreSQL server did not answer; check that it runs and that the DSN is right."""


class SchemaError(ChancyError):
    """The database schema is behind this version of chancy: run `await chancy.migrate()`
    or `chancy migrate` (or `alembic upgrade head`)."""


class PermissionDeniedError(ConfigurationError):
    """The database role lacks a privilege chancy needs: give the roles that push and run
    jobs the grants printed by `chancy grants --role NAME`, and run migrations as the role
    that owns chancy's tables."""


class DatabaseTimeoutError(ChancyError):
    """A statement of chancy's was cancelled by lock_timeout or statement_timeout; find what
    held it up, or raise the limit with Chancy(lock_timeout=..., statement_timeout=...)."""


class LockTimeoutError(DatabaseTimeoutError):
    """A statement of chancy's waited longer than lock_timeout for a lock that another
    transaction holds; let that transaction finish (see pg_locks and pg_stat_activity),
    or raise Chancy(lock_timeout=...)."""


class StatementTimeoutError(DatabaseTimeoutError):
    """A statement of chancy's ran longer than statement_timeout; raise
    Chancy(statement_timeout=...) if it is expected to take that long."""


class FunctionNotAllowedError(ChancyError):
    """A worker refused a job whose function its allowed= patterns do not allow; the
    function was not imported. If it is yours to run, add a pattern that matches it to
    Chancy(allowed=[...]) or `chancy worker --allow PATTERN`."""


class FunctionNotImportableError(ChancyError):
    """A worker cannot import a job's function: its module is not found, lacks the
    function, or raises when imported. The job is left for a worker that can import it;
    start the worker where the module is importable (the app's directory, or with
    PYTHONPATH set), or pass `chancy worker --app module:chancy`."""


class ResultNotStorableError(ChancyError):
    """A job returned a value chancy cannot store as its result (not JSON, or holding what
    PostgreSQL's jsonb refuses); in a worker the job fails, without a retry. Return str,
    int, float, bool, None, or lists and dicts of them."""


class IncompatiblePayloadError(ChancyError):
    """A job's stored kwargs no longer fit its function's signature: the payload predates
    the function's current signature (it was stored before the function changed
    incompatibly). The job fails without a retry; push it again with kwargs that fit. To
    keep jobs already stored running, give new parameters and new model fields a default."""


class UniqueKeyHeldError(ChancyError):
    """A failed or cancelled job cannot be retried while an unfinished job holds its unique
    key (at most one unfinished job per key); let that job finish, or cancel it, then
    retry."""

    def __init__(
        self, message: str | None = None, *, job_id: int | None = None, holder_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        """The job that was not retried."""
        self.holder_id = holder_id
        """The unfinished job that holds its unique key (None if it was not seen)."""


class InvalidWorkflowError(ChancyError, ValueError):
    """A workflow that could never run: a step name used twice, an ``after`` naming a
    step that is not (yet) in the workflow, a step waiting for itself, too many steps.
    Raised by :meth:`Workflow.step <chancy.workflow.Workflow.step>` when it is built."""


class UnknownWorkflowError(ChancyError, LookupError):
    """No workflow has that id: it was never pushed (or its push rolled back), or it
    finished and retention pruned it with its steps."""


class CorruptJobError(ChancyError):
    """A stored job row is not one chancy could have written (func not a dotted name,
    kwargs not a JSON object, an unknown state, ...); fix or delete the row."""


class JobNotRunningError(ChancyError):
    """The job's attempt no longer holds its job (it was cancelled, already completed, or
    its lease expired and another worker took it over): nothing was written, and the
    transaction must roll back (let the exception propagate)."""
