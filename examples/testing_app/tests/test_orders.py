"""The shop's tests: only chancy's public helpers and its pytest plugin."""

from __future__ import annotations

import pytest
from shop import db
from shop.models import Order
from shop.orders import BIG_ORDER_CENTS, place_order
from shop.tasks import receipt_subject, send_receipt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chancy import Chancy
from chancy.testing import assert_pushed, drain, refute_pushed, run_job

EMAILS = [f"customer{n}@example.com" for n in range(20)]


@pytest.mark.parametrize("email", EMAILS)
async def test_an_order_pushes_its_receipt_in_the_same_transaction(
    shop: Chancy, email: str
) -> None:
    async with AsyncSession(db.get_engine()) as session, session.begin():
        order_id = await place_order(shop, session, email, 1_250)
        await assert_pushed(session, func=send_receipt, kwargs={"order_id": order_id}, queue="mail")
        await refute_pushed(shop, func=send_receipt)  # not committed yet: no worker sees it


@pytest.mark.parametrize("total", [1, 99, 500, 1_000, 5_000, 10_000, 50_000, 99_999, 10**5, 10**6])
async def test_a_rolled_back_order_leaves_no_receipt(shop: Chancy, total: int) -> None:
    async with AsyncSession(db.get_engine()) as session, session.begin():
        await place_order(shop, session, "rollback@example.com", total)
        await session.rollback()
    await refute_pushed(shop, func=send_receipt)


@pytest.mark.parametrize("orders", range(1, 11))
async def test_draining_sends_every_receipt(shop: Chancy, orders: int) -> None:
    async with AsyncSession(db.get_engine()) as session, session.begin():
        for n in range(orders):
            await place_order(shop, session, f"c{n}@example.com", 100 + n)
    result = await drain(shop)
    assert result.succeeded == orders
    async with AsyncSession(db.get_engine()) as session:
        sent = (await session.scalars(select(Order.receipt_sent))).all()
    assert sent == [True] * orders


async def test_big_orders_get_their_receipt_first(shop: Chancy) -> None:
    async with AsyncSession(db.get_engine()) as session, session.begin():
        small = await place_order(shop, session, "small@example.com", 100)
        big = await place_order(shop, session, "big@example.com", BIG_ORDER_CENTS)
    result = await drain(shop, queue="mail")
    assert [job.kwargs["order_id"] for job in result.jobs] == [big, small]


@pytest.mark.parametrize(
    ("order_id", "total", "subject"),
    [
        (1, 100, "Order 1: 1.00 EUR"),
        (2, 1, "Order 2: 0.01 EUR"),
        (3, 12_345, "Order 3: 123.45 EUR"),
        (4, 10**6, "Order 4: 10000.00 EUR"),
        (5, 99, "Order 5: 0.99 EUR"),
        (6, 1_000, "Order 6: 10.00 EUR"),
        (7, 250, "Order 7: 2.50 EUR"),
        (8, 10, "Order 8: 0.10 EUR"),
    ],
)
async def test_receipt_subject(order_id: int, total: int, subject: str) -> None:
    assert await run_job(receipt_subject, order_id=order_id, total_cents=total) == subject


async def test_an_order_must_cost_something(shop: Chancy) -> None:
    async with AsyncSession(db.get_engine()) as session, session.begin():
        with pytest.raises(ValueError, match="costs something"):
            await place_order(shop, session, "free@example.com", 0)
    await refute_pushed(shop)
