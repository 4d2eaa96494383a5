"""handovers: the lease of the run that holds a workflow (``runner``, ``run_since``,
``lease_until``), so that two runs of one workflow (two operators, an API retry and a CLI
resume, two service workers) cannot run its steps at once: a run takes the row by a
compare-and-set before its first step (specs/handover.md "One run at a time")

Revision ID: i0013wflease
Revises: i0012auditidx
Create Date: 2026-12-06 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0013wflease"
down_revision = "i0012auditidx"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handovers") as batch:
        batch.add_column(sa.Column("runner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("run_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handovers") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("run_since")
        batch.drop_column("runner")
