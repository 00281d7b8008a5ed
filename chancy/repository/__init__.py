"""The SQL seam: every statement chancy runs on its tables, built with SQLAlchemy Core
over :mod:`chancy.models`, one module per concern (internal: not public API):

=================  ==========================================================
``push``           inserting jobs (:class:`PushRepository`)
``claim``          starting jobs, plain and limited (:class:`ClaimRepository`)
``attempts``       outcomes, leases and release of running attempts
                   (:class:`AttemptRepository`)
``maintenance``    rescue, promotion, pruning, bulk retry
                   (:class:`MaintenanceRepository`)
``jobs``           one job by id: read, cancel, retry (:class:`JobRepository`)
``queues``         declaring, pausing, reading queues (:class:`QueueRepository`)
``schedules``      cron schedules (:class:`ScheduleRepository`)
``leader``         the leader's lease (:class:`LeaderRepository`)
``workers``        the live workers' rows (:class:`WorkerRepository`)
``runner``         :class:`~chancy.repository.runner.Statement`, which runs every
                   statement and translates database errors, once
``announce``       the notifications statements send; ``tables``: shared handles
=================  ==========================================================

Methods take the caller's connection (an ``AsyncConnection``, an ``AsyncSession``, the
bare asyncpg connection of the hot path, or for sync apps a ``Connection``/``Session``),
commit nothing, and return frozen values (:mod:`chancy.jobs`, :mod:`chancy.queue`): rows
never leave this package. Method names say what they do to which entity, with the guard
and the batch in the name (``complete_many_if_running``).

It is the only place that writes SQL for jobs, queues, schedules, workers and the
leader. SQL runs elsewhere only where it is not about those rows: Alembic's migrations and their
advisory lock (:mod:`chancy.migrations`, and ``Chancy.migrate``, which lifts chancy's
timeouts for its transaction); the ``set_config`` calls that give a push in the
application's transaction chancy's timeouts and then its own back
(:mod:`chancy.database.timeouts`); the ``SELECT 1`` that checks the server answers; the
listener's ``LISTEN``; and the grants printed by ``chancy grants``.
"""

from chancy.repository.attempts import Attempt, AttemptRepository, Completion, Outcome
from chancy.repository.claim import LEASE_SECONDS_DEFAULT, ClaimRepository
from chancy.repository.jobs import JobFilters, JobRepository
from chancy.repository.leader import LeaderRepository
from chancy.repository.maintenance import MaintenanceRepository
from chancy.repository.push import PushRepository
from chancy.repository.queues import QueueRepository
from chancy.repository.runner import Executable, HotExecutable, SyncExecutable
from chancy.repository.schedules import ScheduleRepository
from chancy.repository.workers import WorkerInfo, WorkerPresence, WorkerRepository
from chancy.repository.workflows import PushedWorkflow, WorkflowRepository

__all__ = [
    "LEASE_SECONDS_DEFAULT",
    "Attempt",
    "AttemptRepository",
    "ClaimRepository",
    "Completion",
    "Executable",
    "HotExecutable",
    "JobFilters",
    "JobRepository",
    "LeaderRepository",
    "MaintenanceRepository",
    "Outcome",
    "PushRepository",
    "PushedWorkflow",
    "QueueRepository",
    "ScheduleRepository",
    "SyncExecutable",
    "WorkerInfo",
    "WorkerPresence",
    "WorkerRepository",
    "WorkflowRepository",
]
