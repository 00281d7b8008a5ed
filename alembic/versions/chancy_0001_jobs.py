"""The jobs table, with the indexes of the claim, promotion, rescue, retention and
unique keys.

Revision ID: chancy_0001
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "chancy_0001"
down_revision: str | Sequence[str] | None = None
# chancy's history is recorded in its own version table (chancy_alembic_version); an
# application runs it from its env.py with chancy.alembic.upgrade (docs/embedding.md).
branch_labels: str | Sequence[str] | None = ("chancy",)
depends_on: str | Sequence[str] | None = None

STATES = "'cancelled', 'failed', 'pending', 'retrying', 'running', 'scheduled', 'succeeded'"


def upgrade() -> None:
    op.create_table(
        "chancy_jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("func", sa.Text(), nullable=False),
        sa.Column("kwargs", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "scheduled_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("unique_key", sa.Text(), nullable=True),
        sa.Column("timeout", sa.Double(), nullable=True),
        sa.Column("meta", JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("errors", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("result", JSONB(), nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_chancy_jobs_state")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_chancy_jobs_attempts")),
        sa.CheckConstraint("max_attempts >= 1", name=op.f("ck_chancy_jobs_max_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chancy_jobs")),
    )
    op.create_index(
        "ix_chancy_jobs_claim",
        "chancy_jobs",
        ["queue", "priority", "id"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_chancy_jobs_waiting",
        "chancy_jobs",
        ["scheduled_at"],
        postgresql_where=sa.text("state IN ('retrying', 'scheduled')"),
    )
    op.create_index(
        "ix_chancy_jobs_lease",
        "chancy_jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_index(
        "ix_chancy_jobs_finished",
        "chancy_jobs",
        ["completed_at"],
        postgresql_where=sa.text("state IN ('cancelled', 'failed', 'succeeded')"),
    )
    op.create_index(
        "uq_chancy_jobs_unique_key",
        "chancy_jobs",
        ["unique_key"],
        unique=True,
        postgresql_where=sa.text("state IN ('pending', 'retrying', 'running', 'scheduled')"),
    )


def downgrade() -> None:
    op.drop_table("chancy_jobs")
