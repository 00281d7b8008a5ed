"""Placing an order: the order row and its receipt job commit together, or neither."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chancy import Chancy, Job
from shop.models import Order
from shop.tasks import send_receipt

BIG_ORDER_CENTS = 100_000


async def place_order(chancy: Chancy, session: AsyncSession, email: str, total_cents: int) -> int:
    """Store an order and push its receipt, in the caller's transaction; big orders get
    their receipt first."""
    if total_cents <= 0:
        raise ValueError("an order costs something")
    order = Order(email=email, total_cents=total_cents)
    session.add(order)
    await session.flush()
    receipt = Job.from_func(send_receipt, kwargs={"order_id": order.id}, queue="mail")
    if total_cents >= BIG_ORDER_CENTS:
        receipt = receipt.with_priority(-10)
    await chancy.push(receipt, session=session)
    return order.id
