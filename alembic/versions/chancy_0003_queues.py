"""Queues in the database (pause, global limits, rate limits), limits per key, and cron
schedules.

Every queue that already holds jobs is declared, and so is ``default``, before the jobs'
queue becomes a foreign key.

Revision ID: chancy_0003
Revises: chancy_0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "chancy_0003"
down_revision: str | Sequence[str] | None = "chancy_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column[sa.DateTime]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), server_default=default, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "chancy_queues",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _timestamp("resume_at", nullable=True),
        sa.Column("global_concurrency", sa.Integer(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_period", sa.Double(), nullable=True),
        sa.Column("keyed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _timestamp("created_at", now=True),
        _timestamp("updated_at", now=True),
        sa.CheckConstraint(
            "global_concurrency IS NULL OR global_concurrency >= 1",
            name=op.f("ck_chancy_queues_global"),
        ),
        sa.CheckConstraint(
            "rate_limit IS NULL OR rate_limit >= 1", name=op.f("ck_chancy_queues_rate_limit")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chancy_queues")),
    )
    op.execute(
        "INSERT INTO chancy_queues (name) "
        "SELECT 'default' UNION SELECT DISTINCT queue FROM chancy_jobs"
    )
    op.create_foreign_key(
        op.f("fk_chancy_jobs_queue_chancy_queues"),
        "chancy_jobs",
        "chancy_queues",
        ["queue"],
        ["name"],
    )
    for name, type_ in (
        ("concurrency_key", sa.Text()),
        ("concurrency_limit", sa.Integer()),
        ("rate_key", sa.Text()),
        ("rate_limit", sa.Integer()),
        ("rate_period", sa.Double()),
    ):
        op.add_column("chancy_jobs", sa.Column(name, type_, nullable=True))
    op.create_index(
        "ix_chancy_jobs_started",
        "chancy_jobs",
        ["queue", "started_at"],
        postgresql_where=sa.text("started_at IS NOT NULL"),
    )
    op.create_index(
        "ix_chancy_jobs_concurrency_key",
        "chancy_jobs",
        ["queue", "concurrency_key"],
        postgresql_where=sa.text("state = 'running' AND concurrency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_chancy_jobs_rate_key",
        "chancy_jobs",
        ["queue", "rate_key", "started_at"],
        postgresql_where=sa.text("rate_key IS NOT NULL AND started_at IS NOT NULL"),
    )
    op.create_table(
        "chancy_schedules",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("cron", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("job", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("catch_up", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        _timestamp("next_run_at"),
        _timestamp("last_run_at", nullable=True),
        _timestamp("updated_at", now=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_chancy_schedules")),
    )


def downgrade() -> None:
    op.drop_table("chancy_schedules")
    op.drop_index("ix_chancy_jobs_rate_key", table_name="chancy_jobs")
    op.drop_index("ix_chancy_jobs_concurrency_key", table_name="chancy_jobs")
    op.drop_index("ix_chancy_jobs_started", table_name="chancy_jobs")
    for name in ("rate_period", "rate_limit", "rate_key", "concurrency_limit", "concurrency_key"):
        op.drop_column("chancy_jobs", name)
    op.drop_constraint(
        op.f("fk_chancy_jobs_queue_chancy_queues"), "chancy_jobs", type_="foreignkey"
    )
    op.drop_table("chancy_queues")
