"""The shop's jobs: plain functions, which a worker imports by name.

Run them with a worker on the shop's database (from the repository root, so that
``examples.alembic_app.tasks`` imports), allowed to run these functions only::

    chancy worker --dsn "$APP_DSN" --queue receipts --allow 'examples.alembic_app.tasks.*'
"""

from __future__ import annotations

import logging

from chancy.executor import Job
from chancy.queue import Queue

log = logging.getLogger(__name__)

RECEIPTS = Queue(name="receipts", concurrency=5)
ALLOWED = ["examples.alembic_app.tasks.*"]
"""The functions the shop's workers may run (``Chancy(allowed=...)``): these tasks."""


def send_receipt(order_id: int) -> str:
    """Send the receipt of an order (here: a log line). The return value is stored as the
    job's result."""
    log.info("receipt for order %s sent", order_id)
    return f"receipt for order {order_id} sent"


def receipt_job(order_id: int) -> Job:
    """The job that sends ``order_id``'s receipt: at most one unfinished per order, tagged
    with the order so that ``Order.jobs`` finds it."""
    return Job.from_func(
        send_receipt,
        kwargs={"order_id": order_id},
        queue=RECEIPTS.name,
        max_attempts=3,
        unique_key=f"receipt:{order_id}",
        meta={"order_id": order_id},
    )
