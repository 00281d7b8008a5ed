"""A module whose import takes :data:`IMPORT_SECONDS`, longer than the chaos workers'
lease (:class:`benchmarks.chaos.fleet.WorkerSettings`), and its job.

Nothing imports it but a worker about to run :func:`record_after_import` (the harness
pushes that job by its name, ``SLOW_IMPORT_FUNC`` in :mod:`benchmarks.chaos.scenarios`),
so each worker process imports it afresh, while its other jobs run: their leases must not
lapse meanwhile.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.chaos.jobs import record_in_thread
from chancy.executor import QueuedJob

__all__ = ["IMPORT_SECONDS", "record_after_import"]

IMPORT_SECONDS = 3.0

time.sleep(IMPORT_SECONDS)


def record_after_import(n: int, *, job: QueuedJob) -> dict[str, Any]:
    """:func:`benchmarks.chaos.jobs.record_in_thread`, from a module slow to import. A
    plain function: once its run has begun, a stop waits for it (a coroutine could be
    given back after its ledger row, which would count as a duplicate)."""
    return record_in_thread(n, job=job)
