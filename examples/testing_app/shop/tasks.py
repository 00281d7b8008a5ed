"""The shop's jobs."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from shop import db
from shop.models import Order

SENT: list[int] = []


async def send_receipt(order_id: int) -> str:
    """Mail the receipt (here: remember it) and mark the order."""
    async with AsyncSession(db.get_engine()) as session, session.begin():
        result = await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(receipt_sent=True)
            .returning(Order.email)
        )
        email = result.scalar_one()
    SENT.append(order_id)
    return f"receipt for order {order_id} sent to {email}"


def receipt_subject(order_id: int, total_cents: int) -> str:
    """A plain function job: the subject line of a receipt."""
    return f"Order {order_id}: {total_cents / 100:.2f} EUR"
