"""How a worker runs: its leases, its graceful stop, and the pace of its services."""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from datetime import timedelta

from chancy.errors import ConfigurationError
from chancy.repository import LEASE_SECONDS_DEFAULT
from chancy.services.cron import CRON_INTERVAL_DEFAULT
from chancy.services.leader import LEADER_TTL_DEFAULT
from chancy.services.promoter import PROMOTE_BATCH_DEFAULT, PROMOTE_INTERVAL_DEFAULT
from chancy.services.pruner import (
    PRUNE_BATCH_DEFAULT,
    PRUNE_INTERVAL_DEFAULT,
    RETENTION_DEFAULT,
    checked_retention,
)
from chancy.services.rescuer import RESCUE_BATCH_DEFAULT, RESCUE_INTERVAL_DEFAULT
from chancy.states import JobState
from chancy.worker.queue_settings import QUEUE_REFRESH_INTERVAL_DEFAULT

__all__ = [
    "DURABLE_CLAIMS_DEFAULT",
    "SHUTDOWN_TIMEOUT_DEFAULT",
    "WORKER_SETTINGS_DEFAULT",
    "WorkerSettings",
]

SHUTDOWN_TIMEOUT_DEFAULT = 30.0
DURABLE_CLAIMS_DEFAULT = False

# The settings that are a number of seconds greater than zero.
_INTERVALS = (
    "lease_seconds",
    "queue_refresh_interval",
    "leader_ttl",
    "promote_interval",
    "rescue_interval",
    "cron_interval",
    "prune_interval",
)
_BATCHES = ("promote_batch", "rescue_batch", "prune_batch")
# The largest number of seconds a setting may have: a lease or an interval of more than
# 30 years is a mistake, and PostgreSQL's timestamps end (a lease of 1e300 s cannot be
# stored). Batches are LIMITs of 32-bit parameters.
SECONDS_MAX = 1e9
BATCH_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """The settings of a :class:`~chancy.worker.Worker`; every one has a default (the
    ``..._DEFAULT`` constant beside the class that uses it), and a value that could not
    work raises :class:`~chancy.errors.ConfigurationError` here, naming the setting.

    - ``lease_seconds`` (30): how long a claimed job stays this worker's without a
      heartbeat; the heartbeat renews it every third of that. A worker that dies loses its
      jobs to the rescuer once their leases expire.
    - ``shutdown_timeout`` (30): on a graceful stop, how long running jobs may take to
      finish before they are interrupted and given back (``pending`` at once); 0 gives
      them back at once, ``float("inf")`` waits for them however long they take. A plain
      function running in a thread cannot be interrupted: it is waited for (its lease
      renewed), never given back while it runs.
    - ``queue_refresh_interval`` (5): how often the queues' settings (pause, limits) are
      read again in case a notification of their change was lost.
    - ``leader_ttl`` (10): the leader's lease: how soon another worker takes over from a
      leader that died.
    - ``promote_interval`` (0.5), ``promote_batch`` (1000): how often the leader makes due
      scheduled and retrying jobs ready, and how many per statement.
    - ``rescue_interval`` (2), ``rescue_batch`` (1000): how often the leader takes back
      jobs whose lease expired, and how many per statement.
    - ``cron_interval`` (1): how often the leader pushes the jobs of due cron ticks.
    - ``prune_interval`` (60), ``prune_batch`` (1000), ``retention``: how often the leader
      deletes finished jobs, how many per statement, and how long they are kept per final
      state (default: succeeded 1 day, failed and cancelled 7 days; a state left out is
      kept forever).
    - ``durable_claims`` (False): whether a claim waits for its commit to reach the disk.
      By default it does not (``synchronous_commit = off`` for the claim alone: one disk
      flush fewer per batch of jobs started). That is safe: each attempt holds a random
      fencing token, so a claim a server crash loses only lets its job run again after
      the crash, under a new token, while the first run's writes are refused (as when a
      lease expires). ``True`` keeps claims durable, so that a job whose claim was
      answered never runs twice because of a crash; outcomes are always durable.
    """

    lease_seconds: float = LEASE_SECONDS_DEFAULT
    shutdown_timeout: float = SHUTDOWN_TIMEOUT_DEFAULT
    queue_refresh_interval: float = QUEUE_REFRESH_INTERVAL_DEFAULT
    leader_ttl: float = LEADER_TTL_DEFAULT
    promote_interval: float = PROMOTE_INTERVAL_DEFAULT
    promote_batch: int = PROMOTE_BATCH_DEFAULT
    rescue_interval: float = RESCUE_INTERVAL_DEFAULT
    rescue_batch: int = RESCUE_BATCH_DEFAULT
    cron_interval: float = CRON_INTERVAL_DEFAULT
    prune_interval: float = PRUNE_INTERVAL_DEFAULT
    prune_batch: int = PRUNE_BATCH_DEFAULT
    retention: Mapping[JobState, timedelta] = dataclasses.field(
        default_factory=lambda: RETENTION_DEFAULT
    )
    durable_claims: bool = DURABLE_CLAIMS_DEFAULT

    def __post_init__(self) -> None:
        for name in _INTERVALS:
            _check_seconds(name, getattr(self, name), zero_allowed=False)
        _check_shutdown_timeout(self.shutdown_timeout)
        for name in _BATCHES:
            _check_batch(name, getattr(self, name))
        if not isinstance(self.durable_claims, bool):
            raise ConfigurationError(
                f"WorkerSettings(durable_claims={self.durable_claims!r}) cannot work: give "
                "True or False"
            )
        retention = types.MappingProxyType(checked_retention(self.retention))
        object.__setattr__(self, "retention", retention)

    def __hash__(self) -> int:
        # The retention is a read-only mapping, which has no hash of its own.
        values = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "retention"]
        return hash((*values, frozenset(self.retention.items())))


def _check_seconds(name: str, value: object, *, zero_allowed: bool) -> None:
    if not _is_seconds(value, zero_allowed=zero_allowed):
        least = "from zero" if zero_allowed else "more than zero and"
        raise ConfigurationError(
            f"WorkerSettings({name}={value!r}) cannot work: give a finite number of seconds "
            f"{least} up to {SECONDS_MAX:,.0f}, such as {name}={_default(name)}"
        )


def _check_shutdown_timeout(value: object) -> None:
    """Zero or more seconds; ``inf``: running jobs are never interrupted by a stop."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == math.inf:
        return
    _check_seconds("shutdown_timeout", value, zero_allowed=True)


def _is_seconds(value: object, *, zero_allowed: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int) and value > SECONDS_MAX:
        return False  # before float(), which fails on ints past 1e308
    return 0 <= value <= SECONDS_MAX and (value > 0 or zero_allowed)


def _check_batch(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= BATCH_MAX:
        raise ConfigurationError(
            f"WorkerSettings({name}={value!r}) cannot work: give a whole number of rows from "
            f"1 to {BATCH_MAX:,}, such as {name}={_default(name)}"
        )


def _default(name: str) -> object:
    (field,) = (f for f in dataclasses.fields(WorkerSettings) if f.name == name)
    return field.default


WORKER_SETTINGS_DEFAULT = WorkerSettings()
"""Every setting at its default: what a worker runs with unless it is given settings."""
