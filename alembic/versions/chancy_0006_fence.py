"""A random fencing token per attempt: ``chancy_jobs.fence``.

Until now an attempt's token was ``attempts`` (one more at each claim), so a claim had to
reach the disk before its worker ran the job: a claim lost in a server crash would let
the next claim hand out the same number again, and the first worker's late outcome would
be taken for the second's. A token drawn at random at each claim never comes back, so
claims may commit asynchronously. Jobs running while this runs have no token: a worker
of this version cannot write their outcomes, and the rescuer takes them back once their
leases expire (stop the workers before migrating, as for any migration).

Revision ID: chancy_0006
Revises: chancy_0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chancy_0006"
down_revision: str | Sequence[str] | None = "chancy_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("chancy_jobs", sa.Column("fence", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("chancy_jobs", "fence")
