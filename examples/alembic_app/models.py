"""The shop's own models: its DeclarativeBase, its MetaData, its tables.

chancy's tables are not on this MetaData: they belong to chancy's history (see
``alembic/env.py``). An order still reaches its jobs through the ORM: every job pushed
for an order carries ``meta={"order_id": ...}``, and :attr:`Order.jobs` is a read-only
relationship on that JSONB key.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, MetaData, Numeric, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship

from chancy.models import JobRow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    total: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # The jobs pushed for this order, oldest first; read-only, as jobs are chancy's to
    # write. `meta -> 'order_id' = to_jsonb(orders.id)` compares JSON values, so a job
    # with something else under that key does not match (and breaks no cast). chancy_jobs
    # has no index on meta: a load filters the whole jobs table.
    jobs: Mapped[list[JobRow]] = relationship(
        JobRow,
        primaryjoin=lambda: foreign(JobRow.meta["order_id"]) == func.to_jsonb(Order.id),
        viewonly=True,
        order_by=JobRow.id,
    )
