"""The shop's engine and its Chancy, made once per process from a DSN."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chancy import Chancy
from chancy.queue import Queue

engine: AsyncEngine | None = None


def make_chancy(dsn: str) -> Chancy:
    """The shop's Chancy: its queues, and only its own functions may run."""
    return Chancy(dsn, queues=[Queue(name="default"), Queue(name="mail")], allowed=["shop.*"])


def connect(dsn: str) -> AsyncEngine:
    """Point the shop at ``dsn`` (the app's own engine, as jobs use it)."""
    global engine
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1))
    return engine


def get_engine() -> AsyncEngine:
    if engine is None:
        raise RuntimeError("shop.db.connect(dsn) was not called")
    return engine
