"""Ready jobs by key, for the limited claim: ready jobs with keys in (priority, id)
order, each key's ready jobs in that order, and the claim index narrowed to ready jobs
without keys.

When the first ready jobs are all held back by their keys, the limited claim takes from
each key what the key can start, so a key's backlog costs it one index probe, not a walk
(a busy key with 5,000 ready jobs used to fill the claim's window and starve every other
key).

Revision ID: chancy_0004
Revises: chancy_0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chancy_0004"
down_revision: str | Sequence[str] | None = "chancy_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_READY = "state = 'pending'"
_CLAIM_WITHOUT_KEYS = f"{_READY} AND concurrency_key IS NULL AND rate_key IS NULL"


def upgrade() -> None:
    op.drop_index("ix_chancy_jobs_claim", table_name="chancy_jobs")
    op.create_index(
        "ix_chancy_jobs_claim",
        "chancy_jobs",
        ["queue", "priority", "id"],
        postgresql_where=sa.text(_CLAIM_WITHOUT_KEYS),
    )
    op.create_index(
        "ix_chancy_jobs_ready_keyed",
        "chancy_jobs",
        ["queue", "priority", "id"],
        postgresql_where=sa.text(
            f"{_READY} AND (concurrency_key IS NOT NULL OR rate_key IS NOT NULL)"
        ),
    )
    op.create_index(
        "ix_chancy_jobs_ready_concurrency_key",
        "chancy_jobs",
        ["queue", "concurrency_key", "priority", "id"],
        postgresql_where=sa.text(f"{_READY} AND concurrency_key IS NOT NULL"),
    )
    op.create_index(
        "ix_chancy_jobs_ready_rate_key",
        "chancy_jobs",
        ["queue", "rate_key", "priority", "id"],
        postgresql_where=sa.text(f"{_READY} AND rate_key IS NOT NULL AND concurrency_key IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_chancy_jobs_ready_rate_key", table_name="chancy_jobs")
    op.drop_index("ix_chancy_jobs_ready_concurrency_key", table_name="chancy_jobs")
    op.drop_index("ix_chancy_jobs_ready_keyed", table_name="chancy_jobs")
    op.drop_index("ix_chancy_jobs_claim", table_name="chancy_jobs")
    op.create_index(
        "ix_chancy_jobs_claim",
        "chancy_jobs",
        ["queue", "priority", "id"],
        postgresql_where=sa.text(_READY),
    )
