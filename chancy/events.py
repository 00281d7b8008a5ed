"""What chancy's statements announce, and on which channel.

Statements that make jobs ready, finish them or change a queue send a JSON notification
on :data:`EVENTS_CHANNEL` (delivered at commit: a rolled-back change announces nothing).
The payload is an object whose ``event`` is an :class:`EventKind`:

- ``pushed`` with ``queue``: that queue has ready jobs (a push, a promotion, a rescue, a
  release, a retry, a resume); idle workers of the queue claim.
- ``finished`` with ``ids``: these jobs reached a final state; ``wait_for_job`` looks
  again, and a worker running a cancelled one stops it.
- ``queue_changed`` with ``queue``: its settings changed (pause, limits, keys); workers
  reload them.
- ``reconnected``: sent by the listener itself, never by the database, after its
  connection was lost: whatever was announced meanwhile may be missed, so look again.

Notifications only hurry things up: every waiter also polls.
"""

from __future__ import annotations

import enum
from typing import TypedDict

__all__ = ["EVENTS_CHANNEL", "FINISHED_IDS_PER_EVENT", "Event", "EventKind"]

EVENTS_CHANNEL = "chancy_events"
FINISHED_IDS_PER_EVENT = 300
"""The most ids one ``finished`` event carries (more are sent as several events):
PostgreSQL refuses a notification's payload past 8,000 bytes, and an id with its comma
takes up to 20."""


class EventKind(enum.StrEnum):
    """The ``event`` of a notification's payload."""

    PUSHED = "pushed"
    FINISHED = "finished"
    QUEUE_CHANGED = "queue_changed"
    RECONNECTED = "reconnected"


class Event(TypedDict, total=False):
    """A notification's payload, decoded: ``event`` always, ``queue`` or ``ids`` by kind."""

    event: str
    queue: str
    ids: list[int]
