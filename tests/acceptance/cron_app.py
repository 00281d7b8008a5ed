"""The app of the cron worker processes: a schedule that ticks every second.

Run as ``chancy worker --app tests.acceptance.cron_app:chancy`` with ``LEDGER_DSN`` set.
"""

from __future__ import annotations

import os

from chancy.app import Chancy
from chancy.cron import Cron
from chancy.executor import Job
from chancy.queue import Queue


def tick() -> None:
    """The scheduled job: nothing to do, its row is the record."""


chancy = Chancy(
    os.environ.get("LEDGER_DSN"),
    queues=[Queue(name="default", concurrency=2, polling_interval=0.2)],
    schedules=[Cron("* * * * * *", Job.from_func(tick), name="every-second")],
)
