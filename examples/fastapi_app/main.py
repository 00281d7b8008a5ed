"""The shop's web API: FastAPI on the shop's own async engine, shared with chancy.

It serves the orders of ``examples/alembic_app`` (whose Alembic environment creates both
the shop's tables and chancy's). ``POST /orders`` writes the order and pushes its receipt
job in the request's one transaction. Jobs run in a worker, either inside the web process
(started by the lifespan when ``RUN_WORKER=1``) or in a process of its own. From the
repository root, once the shop's database exists (see ``examples/alembic_app/app.py``)::

    python -m pip install -e ".[examples]"
    export APP_DSN=postgresql://user:password@localhost:5432/shop
    RUN_WORKER=1 uvicorn examples.fastapi_app.main:app              # web and worker
    uvicorn examples.fastapi_app.main:app &                         # or apart:
    chancy worker --app examples.fastapi_app.main:chancy

Either worker runs only the shop's tasks (``allowed=``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from chancy import Chancy, Worker
from examples.alembic_app.models import Order
from examples.alembic_app.tasks import ALLOWED, RECEIPTS, receipt_job

DSN_ENV = "APP_DSN"
QUEUES = [RECEIPTS]
# The shop's engine settings; chancy borrows the engine and never disposes of it.
ENGINE_OPTIONS: dict[str, Any] = {
    "pool_size": 10,
    "max_overflow": 5,
    "pool_pre_ping": True,
    "echo": os.environ.get("SQL_ECHO") == "1",
    "connect_args": {"server_settings": {"application_name": "shop-api"}},
}


def database_url() -> URL:
    """The shop's database: ``APP_DSN``, on the asyncpg driver."""
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        raise RuntimeError(f"set {DSN_ENV}=postgresql://user:password@host:5432/database")
    return make_url(dsn).set(drivername="postgresql+asyncpg")


def chancy() -> Chancy:
    """The Chancy of ``chancy worker --app examples.fastapi_app.main:chancy``: a worker
    process of its own, whose engine chancy builds with the web app's settings."""
    return Chancy(database_url(), queues=QUEUES, allowed=ALLOWED, engine_options=ENGINE_OPTIONS)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(database_url(), **ENGINE_OPTIONS)
    try:
        async with Chancy(engine=engine, queues=QUEUES, allowed=ALLOWED) as jobs:
            app.state.chancy = jobs
            app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
            if os.environ.get("RUN_WORKER") == "1":
                async with Worker(jobs):  # stops gracefully when the app shuts down
                    yield
            else:
                yield
    finally:
        await engine.dispose()


app = FastAPI(title="shop", lifespan=lifespan)


class NewOrder(BaseModel):
    email: str = Field(max_length=320)
    total: Decimal = Field(gt=0, max_digits=10, decimal_places=2)


class PlacedOrder(BaseModel):
    id: int
    receipt_job_id: int


@app.post("/orders", status_code=201)
async def place_order(new: NewOrder, request: Request) -> PlacedOrder:
    """Store the order and queue its receipt: one transaction, committed before the
    response is sent."""
    jobs: Chancy = request.app.state.chancy
    async with request.app.state.sessions() as session, session.begin():
        order = Order(email=new.email, total=new.total)
        session.add(order)
        await session.flush()  # the order's id, which the job carries
        reference = await jobs.push(receipt_job(order.id), session=session)
    return PlacedOrder(id=order.id, receipt_job_id=reference.id)
