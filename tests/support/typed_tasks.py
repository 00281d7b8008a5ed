"""Job functions with typed payloads (``tests/integration/test_typed_payloads.py``).

Each function checks that it received the types it declares and returns their JSON form,
so that a test can compare what the worker gave it with what was pushed, on any executor
(the processes executor runs them in a child process, which can only send back a value).
Some come in two versions, ``..._v1`` and the current one: a job pushed with the first
and stored under the second's name is a job pushed before the function changed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, SecretStr

from chancy.executor import QueuedJob


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: Decimal
    y: Decimal


class Line(BaseModel):
    sku: UUID
    prices: list[list[Decimal]]
    shipped: list[datetime] = []


class Receipt(BaseModel):
    order_id: int
    total: Decimal
    sent_at: datetime
    ref: UUID
    lines: list[Line]


def send_receipt(
    receipt: Receipt,
    colour: Colour,
    where: Point,
    mode: Literal["mail", "sms"],
    note: datetime | None = None,
    *,
    retries_left: int = 3,
    job: QueuedJob,
) -> dict[str, Any]:
    """Fails unless every argument has its declared type; returns them as JSON."""
    assert isinstance(receipt, Receipt), type(receipt)
    assert isinstance(receipt.total, Decimal)
    assert isinstance(receipt.sent_at, datetime)
    assert isinstance(receipt.ref, UUID)
    assert all(isinstance(line, Line) for line in receipt.lines)
    assert all(isinstance(p, Decimal) for line in receipt.lines for ps in line.prices for p in ps)
    assert isinstance(colour, Colour)
    assert isinstance(where, Point)
    assert isinstance(where.x, Decimal)
    assert mode in ("mail", "sms")
    assert note is None or isinstance(note, datetime)
    assert isinstance(job, QueuedJob)
    return {
        "receipt": receipt.model_dump(mode="json"),
        "colour": colour.value,
        "where": [str(where.x), str(where.y)],
        "mode": mode,
        "note": None if note is None else note.isoformat(),
        "retries_left": retries_left,
    }


class Credentials(BaseModel):
    user: str
    password: SecretStr


def log_in(credentials: Credentials, token: SecretStr) -> str:
    """Returns a digest of what it got, to show the worker had the real secrets (without
    storing them in the result)."""
    secrets = f"{credentials.password.get_secret_value()}:{token.get_secret_value()}"
    return f"{credentials.user}:{hashlib.sha256(secrets.encode()).hexdigest()}"


class OrderV1(BaseModel):
    number: int


def ship_v1(order: OrderV1) -> str:
    return str(order.number)


class Order(BaseModel):
    """:class:`OrderV1` with a field added, with a default."""

    number: int
    express: bool = False


def ship(order: Order, carrier: str = "post", when: datetime | None = None) -> str:
    """:func:`ship_v1` with a model field and two parameters added, all with defaults."""
    return f"{order.number} express={order.express} by {carrier} when={when}"


class StrictOrder(BaseModel):
    """:class:`OrderV1` with a required field added: stored orders no longer fit."""

    number: int
    warehouse: str


def ship_strictly(order: StrictOrder) -> str:
    return order.warehouse


calls: list[str] = []
"""What the renamed functions ran (asyncio and threads executors run in the test's process)."""


def renamed(order: Order) -> str:
    """The function that jobs stored as ``tests.support.typed_tasks.old_name`` run, through
    an alias."""
    calls.append(f"renamed {order.number}")
    return f"renamed {order.number} express={order.express}"


def plain(name: str, count: int = 1, tags: list[str] | None = None, extra: Any = None) -> str:
    """Annotated with plain JSON types only: no typed payload."""
    return name * count
