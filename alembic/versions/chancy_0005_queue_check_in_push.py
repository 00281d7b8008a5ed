"""The push checks a job's queue itself: the foreign key chancy_jobs.queue →
chancy_queues.name is dropped.

The foreign key cost every inserted row a lookup and a lock on its queue's row; the push
statement now locks each queue of its batch once (``FOR KEY SHARE``, as the foreign key
did, so a queue's deletion still waits for a push under way and the push then fails) and
refuses a job whose queue is not declared, storing nothing.

Revision ID: chancy_0005
Revises: chancy_0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "chancy_0005"
down_revision: str | Sequence[str] | None = "chancy_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEY = "fk_chancy_jobs_queue_chancy_queues"


def upgrade() -> None:
    op.drop_constraint(op.f(_FOREIGN_KEY), "chancy_jobs", type_="foreignkey")


def downgrade() -> None:
    # Rows written without the foreign key by anything but chancy's push may name queues
    # that are not declared: declare them, as chancy_0003 did, so the key holds.
    op.execute(
        "INSERT INTO chancy_queues (name) SELECT DISTINCT queue FROM chancy_jobs "
        "ON CONFLICT (name) DO NOTHING"
    )
    op.create_foreign_key(op.f(_FOREIGN_KEY), "chancy_jobs", "chancy_queues", ["queue"], ["name"])
