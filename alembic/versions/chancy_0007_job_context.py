"""What a job's context needs: snoozes and their bound, and the progress it reports.

``snoozes`` counts the times a job raised ``Snooze`` (which uses no attempt), bounded by
``max_snoozes``; ``progress``, ``progress_message`` and ``progress_at`` hold the latest
progress its running attempt reported. All nullable or with a default: adding them
rewrites no row.

Revision ID: chancy_0007
Revises: chancy_0006
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chancy_0007"
down_revision: str | Sequence[str] | None = "chancy_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "chancy_jobs",
        sa.Column("snoozes", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "chancy_jobs",
        sa.Column("max_snoozes", sa.Integer(), server_default=sa.text("100"), nullable=False),
    )
    op.add_column("chancy_jobs", sa.Column("progress", sa.Double(), nullable=True))
    op.add_column("chancy_jobs", sa.Column("progress_message", sa.Text(), nullable=True))
    op.add_column(
        "chancy_jobs", sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    for column in ("progress_at", "progress_message", "progress", "max_snoozes", "snoozes"):
        op.drop_column("chancy_jobs", column)
