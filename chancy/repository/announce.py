"""The notifications statements send (see :mod:`chancy.events`), as CTEs to join.

Each helper returns a one-row CTE; joining it to a statement's result ``ON true`` makes
PostgreSQL run it exactly once per statement, whatever the batch holds. PostgreSQL
delivers the notifications at commit, so a rolled-back change announces nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from chancy.events import EVENTS_CHANNEL, FINISHED_IDS_PER_EVENT, EventKind
from chancy.models import state_in
from chancy.repository.tables import PENDING
from chancy.states import FINISHED_STATES

__all__ = ["announce_finished", "notify", "queue_changed", "wake_queues"]


def notify(payload: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``pg_notify`` on chancy's channel with the JSON ``payload``."""
    return sa.func.pg_notify(sa.literal_column(f"'{EVENTS_CHANNEL}'"), sa.cast(payload, sa.Text))


def wake_queues(changed: sa.CTE) -> sa.CTE:
    """Send ``pushed`` for each queue in which ``changed`` (a CTE with ``queue`` and
    ``state``) made a job ready."""
    ready_queues = (
        sa.select(changed.c.queue)
        .where(changed.c.state == PENDING)
        .distinct()
        .subquery("ready_queues")
    )
    payload = sa.func.json_build_object(
        "event", EventKind.PUSHED.value, "queue", ready_queues.c.queue
    )
    return sa.select(sa.func.count(notify(payload)).label("n")).cte(f"woken_{changed.name}")


def announce_finished(changed: sa.CTE) -> sa.CTE:
    """Send ``finished`` events listing the ids that ``changed`` (a CTE with ``id`` and
    ``state``) moved to a final state, :data:`FINISHED_IDS_PER_EVENT` ids per event: they
    wake ``wait_for_job`` and tell the worker holding a cancelled job to stop it."""
    numbered = (
        sa.select(
            changed.c.id,
            ((sa.func.row_number().over() - 1) // FINISHED_IDS_PER_EVENT).label("chunk"),
        )
        .where(sa.literal_column(state_in(FINISHED_STATES)).self_group())
        .select_from(changed)
        .subquery("finished")
    )
    chunks = (
        sa.select(sa.func.json_agg(numbered.c.id).label("ids"))
        .group_by(numbered.c.chunk)
        .subquery("chunks")
    )
    payload = sa.func.json_build_object("event", EventKind.FINISHED.value, "ids", chunks.c.ids)
    notified = sa.select(notify(payload).label("sent"))
    return (
        sa.select(sa.func.count().label("n"))
        .select_from(notified.subquery("notified"))
        .cte(f"announced_{changed.name}")
    )


def queue_changed(name: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Send ``queue_changed`` for the queue ``name``: workers reload its settings."""
    return notify(sa.func.json_build_object("event", EventKind.QUEUE_CHANGED.value, "queue", name))
