"""The shop's own tables (chancy's live beside them, in the same database)."""

from __future__ import annotations

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "shop_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    total_cents: Mapped[int] = mapped_column(Integer)
    receipt_sent: Mapped[bool] = mapped_column(Boolean, default=False)
