"""Workflows: steps that wait for other steps.

A workflow's steps are jobs that name it (``workflow_id``, ``step``); a step with parents
is stored ``blocked`` (a new state, out of every claim index) with the number of parents
it waits for (``waiting_on``), and released by a trigger in the statement that finishes
its last parent (:mod:`chancy.schema_functions`). ``blocked`` is unfinished: a blocked
step holds its unique key, so the unique index is made again with it.

Revision ID: chancy_0008
Revises: chancy_0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chancy.schema_functions import RELEASE_STEPS_V1, drop_release_steps

revision: str = "chancy_0008"
down_revision: str | Sequence[str] | None = "chancy_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATES_BEFORE = "'cancelled', 'failed', 'pending', 'retrying', 'running', 'scheduled', 'succeeded'"
STATES = f"'blocked', {STATES_BEFORE}"
UNFINISHED_BEFORE = "'pending', 'retrying', 'running', 'scheduled'"
UNFINISHED = f"'blocked', {UNFINISHED_BEFORE}"


def _states(states: str, unfinished: str) -> None:
    op.drop_constraint(op.f("ck_chancy_jobs_state"), "chancy_jobs", type_="check")
    op.create_check_constraint(op.f("ck_chancy_jobs_state"), "chancy_jobs", f"state IN ({states})")
    op.drop_index("uq_chancy_jobs_unique_key", table_name="chancy_jobs")
    op.create_index(
        "uq_chancy_jobs_unique_key",
        "chancy_jobs",
        ["unique_key"],
        unique=True,
        postgresql_where=sa.text(f"state IN ({unfinished})"),
    )


def upgrade() -> None:
    op.add_column("chancy_jobs", sa.Column("workflow_id", sa.BigInteger(), nullable=True))
    op.add_column("chancy_jobs", sa.Column("step", sa.Text(), nullable=True))
    op.add_column("chancy_jobs", sa.Column("always", sa.Boolean(), nullable=True))
    op.add_column("chancy_jobs", sa.Column("waiting_on", sa.Integer(), nullable=True))
    op.create_index(
        "ix_chancy_jobs_workflow_id",
        "chancy_jobs",
        ["workflow_id"],
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
    )
    _states(STATES, UNFINISHED)
    op.create_table(
        "chancy_workflows",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chancy_workflows")),
    )
    op.create_table(
        "chancy_workflow_edges",
        sa.Column("child_id", sa.BigInteger(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("child_id", "parent_id", name=op.f("pk_chancy_workflow_edges")),
    )
    op.create_index("ix_chancy_workflow_edges_parent_id", "chancy_workflow_edges", ["parent_id"])
    for statement in RELEASE_STEPS_V1:
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_release_steps():
        op.execute(statement)
    # The earlier schema has no blocked state: steps still waiting end cancelled.
    op.execute(
        "UPDATE chancy_jobs SET state = 'cancelled', completed_at = now() WHERE state = 'blocked'"
    )
    op.drop_table("chancy_workflow_edges")
    op.drop_table("chancy_workflows")
    _states(STATES_BEFORE, UNFINISHED_BEFORE)
    op.drop_index("ix_chancy_jobs_workflow_id", table_name="chancy_jobs")
    for column in ("waiting_on", "always", "step", "workflow_id"):
        op.drop_column("chancy_jobs", column)
