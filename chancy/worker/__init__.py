"""Workers: claim jobs, run them, write their outcomes. See :class:`Worker`."""

from chancy.worker.worker import SHUTDOWN_TIMEOUT_DEFAULT, Worker

__all__ = ["SHUTDOWN_TIMEOUT_DEFAULT", "Worker"]
