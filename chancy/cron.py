"""Cron schedules: a job pushed at every tick of a cron expression, in a time zone.

::

    Chancy(dsn, queues=[...], schedules=[
        Cron("*/5 * * * *", Job.from_func(refresh_rates)),
        Cron("30 2 * * *", Job.from_func(nightly_report), timezone="Europe/Paris"),
    ])

Schedules are stored in the database when a worker starts, and pushed by the elected
leader only: exactly one job per tick however many workers run (the schedule's row is
locked while its tick is pushed, and the job's unique key names the tick). A worker
that starts deletes the stored schedules its app does not declare, unless the app says
``Chancy(prune_schedules=False)``.

Ticks follow the expression in ``timezone``; across daylight-saving changes as Debian cron
does (cronsim's rule):

- a *fixed time*, five fields whose minute and hour fields do not start with ``*``
  (``30 1 * * *``, ``0 9,17 * * 1-5``): a time the spring change skips runs at the first
  minute after the gap (``30 2 * * *`` at 03:00); a time the fall change repeats runs
  once, in its first pass (``30 1 * * *`` in America/New_York at 01:30 EDT, not at 01:30
  EST);
- anything else (``*/15 * * * *``, ``0 * * * *``, ``*/20 1 * * *``, six fields) ticks in
  real time: no tick in the skipped hour, and the repeated hour's ticks in both passes.

Expressions are parsed by ``cronsim``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from chancy.errors import CorruptJobError, InvalidJobError
from chancy.jobs import Job

__all__ = ["CRON_GRACE_DEFAULT", "Cron", "next_tick"]

CRON_GRACE_DEFAULT = timedelta(minutes=1)
"""A tick later than this is missed (the cluster was down): skipped, or run once if the
schedule says ``catch_up``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Cron:
    """Push ``job`` at every tick of ``expression`` (five cron fields) in ``timezone``.

    ``name`` identifies the schedule in the database (default: the job's function and
    the expression, so a changed expression is a new schedule, and the old one is deleted
    when a worker starts); give one to run the same function on two schedules. ``catch_up``:
    when ticks were missed because no worker ran, push one job for them when the cluster
    is back (True), or skip them (False, the default).
    """

    expression: str
    job: Job
    _: dataclasses.KW_ONLY
    timezone: str = "UTC"
    name: str = ""
    catch_up: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.job, Job):
            raise InvalidJobError("Cron needs a Job: Cron('0 * * * *', Job.from_func(fn))")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidJobError(
                f"unknown time zone {self.timezone!r}; use an IANA name such as 'Europe/Paris'"
            ) from exc
        try:
            CronSim(self.expression, datetime.now(zone))
        except CronSimError as exc:
            raise InvalidJobError(
                f"cron expression {self.expression!r} is not valid ({exc}); use five fields: "
                "minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'"
            ) from exc
        if not self.name:
            object.__setattr__(self, "name", f"{self.job.func} {self.expression}")

    def job_fields(self) -> dict[str, Any]:
        """The job as a JSON object, as the schedule row stores it."""
        fields = {f.name: getattr(self.job, f.name) for f in dataclasses.fields(Job)}
        fields["kwargs"] = dict(self.job.kwargs)
        fields["meta"] = dict(self.job.meta)
        fields.pop("scheduled_at")
        fields.pop("delay")
        fields.pop("unique_key")
        return fields


def next_tick(expression: str, timezone: str, after: datetime) -> datetime:
    """The first tick of ``expression`` in ``timezone`` strictly after ``after`` (UTC).

    cronsim reckons fixed times on the wall clock, so from a time in the second pass of a
    repeated hour (01:10 EST) it answers the same clock time's first pass (01:30 EDT),
    which is in the past: such ticks are passed over.
    """
    ticks = iter(CronSim(expression, after.astimezone(ZoneInfo(timezone))))
    while (tick := next(ticks).astimezone(UTC)) <= after:
        pass
    return tick


def job_of(fields: dict[str, Any], name: str, tick: datetime) -> Job:
    """The job a schedule row pushes for ``tick``: unique per schedule and tick.

    Raises :class:`CorruptJobError` when the stored job is not one this version of chancy
    can make (a field it does not know, say: written by a newer version)."""
    try:
        job = Job(**fields)
    except TypeError as exc:
        raise CorruptJobError(
            f"the stored job of schedule {name!r} is not one this version of chancy can "
            f"make ({exc}); start a worker of the version that declares it, or remove it"
        ) from exc
    return job.with_unique_key(f"cron:{name}:{tick.astimezone(UTC).isoformat()}")
