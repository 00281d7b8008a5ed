"""Services that run once per cluster, on the elected leader: one file each."""

from chancy.services.leader import LEADER_TTL_DEFAULT, Leadership
from chancy.services.promoter import PROMOTE_INTERVAL_DEFAULT, Promoter
from chancy.services.rescuer import RESCUE_INTERVAL_DEFAULT, Rescuer

__all__ = [
    "LEADER_TTL_DEFAULT",
    "PROMOTE_INTERVAL_DEFAULT",
    "RESCUE_INTERVAL_DEFAULT",
    "Leadership",
    "Promoter",
    "Rescuer",
]
