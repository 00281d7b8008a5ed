"""What workers need: a per-job retry backoff, and the leader's lease.

Revision ID: chancy_0002
Revises: chancy_0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chancy_0002"
down_revision: str | Sequence[str] | None = "chancy_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chancy_jobs", sa.Column("backoff", sa.Double(), nullable=True))
    op.create_table(
        "chancy_leader",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column(
            "elected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chancy_leader")),
    )


def downgrade() -> None:
    op.drop_table("chancy_leader")
    op.drop_column("chancy_jobs", "backoff")
