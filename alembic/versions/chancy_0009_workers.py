"""The live workers: ``chancy_workers``, a row per worker process.

A worker writes its row when it starts, heartbeats it, and deletes it when it stops
cleanly; the leader deletes the rows of workers that stopped beating. The dashboard's
``/workers`` page reads it.

Revision ID: chancy_0009
Revises: chancy_0008
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "chancy_0009"
down_revision: str | Sequence[str] | None = "chancy_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chancy_workers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chancy_workers")),
    )
    op.create_index("ix_chancy_workers_expires_at", "chancy_workers", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_chancy_workers_expires_at", table_name="chancy_workers")
    op.drop_table("chancy_workers")
