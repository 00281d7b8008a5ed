"""Services that run once per cluster, on the elected leader: one file each, one shape
(:class:`LeaderService`: a ``run_once()`` tick and the loop that runs it)."""

from chancy.services.base import LeaderService
from chancy.services.cron import CRON_INTERVAL_DEFAULT, CronService
from chancy.services.leader import LEADER_TTL_DEFAULT, Leadership
from chancy.services.promoter import PROMOTE_BATCH_DEFAULT, PROMOTE_INTERVAL_DEFAULT, Promoter
from chancy.services.pruner import (
    PRUNE_BATCH_DEFAULT,
    PRUNE_INTERVAL_DEFAULT,
    RETENTION_DEFAULT,
    Pruner,
)
from chancy.services.rescuer import RESCUE_BATCH_DEFAULT, RESCUE_INTERVAL_DEFAULT, Rescuer
from chancy.services.workers import (
    WORKER_PRUNE_BATCH_DEFAULT,
    WORKER_PRUNE_INTERVAL_DEFAULT,
    WorkerPruner,
)

__all__ = [
    "CRON_INTERVAL_DEFAULT",
    "LEADER_TTL_DEFAULT",
    "PROMOTE_BATCH_DEFAULT",
    "PROMOTE_INTERVAL_DEFAULT",
    "PRUNE_BATCH_DEFAULT",
    "PRUNE_INTERVAL_DEFAULT",
    "RESCUE_BATCH_DEFAULT",
    "RESCUE_INTERVAL_DEFAULT",
    "RETENTION_DEFAULT",
    "WORKER_PRUNE_BATCH_DEFAULT",
    "WORKER_PRUNE_INTERVAL_DEFAULT",
    "CronService",
    "LeaderService",
    "Leadership",
    "Promoter",
    "Pruner",
    "Rescuer",
    "WorkerPruner",
]
