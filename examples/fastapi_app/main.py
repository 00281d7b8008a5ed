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

chancy's dashboard is mounted at ``/chancy`` (``pip install 'chancy[web]'``), for the
shop's staff only: HTTP Basic auth, ``admin`` (password in ``DASHBOARD_ADMIN_PASSWORD``)
may act on jobs and queues, ``viewer`` (``DASHBOARD_VIEWER_PASSWORD``) may only look. A
user whose password is not set cannot log in::

    DASHBOARD_ADMIN_PASSWORD=... uvicorn examples.fastapi_app.main:app
    # then open http://127.0.0.1:8000/chancy/ and log in as admin
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from chancy import Chancy, Worker
from chancy.web import Level, create_app
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
# The shop's staff who may open the dashboard: the variable holding each one's password,
# and what each may do there.
STAFF: dict[str, tuple[str, Level]] = {
    "admin": ("DASHBOARD_ADMIN_PASSWORD", "all"),
    "viewer": ("DASHBOARD_VIEWER_PASSWORD", "read_only"),
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
            app.state.dashboard = create_app(jobs, access=staff_access)
            if os.environ.get("RUN_WORKER") == "1":
                async with Worker(jobs):  # stops gracefully when the app shuts down
                    yield
            else:
                yield
    finally:
        await engine.dispose()


def staff_member(headers: Headers) -> str | None:
    """The staff member whose HTTP Basic credentials these are, or None."""
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    expected = os.environ.get(STAFF[user][0], "") if user in STAFF else ""
    right = hmac.compare_digest(password.encode(), expected.encode())
    return user if expected and right else None  # an unset password lets no one in


def staff_access(request: Request) -> Level:
    """The dashboard's access hook: what the member :class:`StaffOnly` let in may do."""
    member = request.scope.get("shop.staff")
    return STAFF[member][1] if member in STAFF else "forbidden"


class StaffOnly:
    """The dashboard behind the shop's login: a request without a staff member's
    credentials gets 401 (the browser asks for them), one with them goes on to the
    dashboard made by the lifespan, naming the member for :func:`staff_access`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        member = staff_member(Headers(scope=scope))
        if member is None:
            refusal = PlainTextResponse(
                "log in as one of the shop's staff",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="shop staff", charset="UTF-8"'},
            )
            await refusal(scope, receive, send)
            return
        scope["shop.staff"] = member
        await scope["app"].state.dashboard(scope, receive, send)


app = FastAPI(title="shop", lifespan=lifespan)
app.mount("/chancy", StaffOnly())


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
