"""The benchmark's job functions, and the app its worker processes run.

A worker is started as ``python -m chancy worker --app benchmarks.tasks:chancy`` with
``BENCH_DSN`` set to the scenario's database (and ``BENCH_CONCURRENCY``, default 10), from
the repository root, so that :func:`noop` is importable as ``benchmarks.tasks.noop``.

Importing this module connects to nothing: :class:`~chancy.Chancy` opens its engine only
when the worker enters it.
"""

from __future__ import annotations

import os

from chancy import Chancy, Queue

__all__ = [
    "CONCURRENCY_ENV",
    "DSN_ENV",
    "QUEUE",
    "QUEUES",
    "WARM_UP_QUEUE",
    "chancy",
    "noop",
]

DSN_ENV = "BENCH_DSN"
CONCURRENCY_ENV = "BENCH_CONCURRENCY"
QUEUE = "bench"
WARM_UP_QUEUE = "warmup"
"""Pushes that warm a connection up go here: no worker runs it, no count includes it."""

QUEUES = (Queue(name=QUEUE, concurrency=int(os.environ.get(CONCURRENCY_ENV, "10"))),)
"""The queues of the workers' app; the pushing side lists them too (with the warm-up
queue), so they are known to chancy however it treats unlisted queues."""

chancy = Chancy(os.environ.get(DSN_ENV), queues=QUEUES)


async def noop() -> None:
    """Do nothing: what is measured is the queue, not the job."""
