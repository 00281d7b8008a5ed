"""Workers: claim jobs, run them, write their outcomes. See :class:`Worker`, and
:class:`WorkerSettings` for how it runs."""

from chancy.worker.settings import SHUTDOWN_TIMEOUT_DEFAULT, WorkerSettings
from chancy.worker.worker import Worker

__all__ = ["SHUTDOWN_TIMEOUT_DEFAULT", "Worker", "WorkerSettings"]
