"""Place an order and queue its receipt in one transaction (synchronous SQLAlchemy).

The shop runs on psycopg; chancy's sync ``push`` writes the job in the shop's own
``Session``, so the order and its receipt job are committed together, or neither is.
From the repository root, on a PostgreSQL server of your own::

    python -m pip install -e ".[examples]"                 # FastAPI, uvicorn, psycopg
    createdb shop                                          # or: psql -c 'CREATE DATABASE shop'
    export APP_DSN=postgresql://user:password@localhost:5432/shop
    (cd examples/alembic_app && alembic upgrade head)      # the shop's tables and chancy's
    python -m examples.alembic_app.app alice@example.com 42.50
    chancy worker --dsn "$APP_DSN" --queue receipts --allow 'examples.alembic_app.tasks.*'
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from chancy.sync import push
from examples.alembic_app.models import Order
from examples.alembic_app.tasks import receipt_job

DSN_ENV = "APP_DSN"


def database_url() -> URL:
    """The shop's database: ``APP_DSN``, on the psycopg driver."""
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        raise RuntimeError(f"set {DSN_ENV}=postgresql://user:password@host:5432/database")
    return make_url(dsn).set(drivername="postgresql+psycopg")


def make_engine() -> Engine:
    return create_engine(database_url(), pool_size=5, pool_pre_ping=True)


def place_order(session: Session, email: str, total: Decimal) -> Order:
    """Add an order and push its receipt job in ``session``'s transaction (committing
    nothing): if the transaction rolls back, the job never existed."""
    order = Order(email=email, total=total)
    session.add(order)
    session.flush()  # the order's id, which the job carries
    push(session, receipt_job(order.id), declare=True)  # "receipts" exists from then on
    return order


def main(email: str, total: str) -> None:
    engine = make_engine()
    try:
        with Session(engine) as session, session.begin():
            order_id = place_order(session, email, Decimal(total)).id
        with Session(engine) as session:
            order = session.get_one(Order, order_id)
            for job in order.jobs:
                print(f"order {order.id}: job {job.id} {job.func} is {job.state}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:3])
