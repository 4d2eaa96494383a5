"""task_runs: the last run of each scheduled housekeeping task (``issuer.task_runs``).

The issuer's time-driven work (CRLs re-signed before their nextUpdate, the VICAL CA staged in
its last months, status lists, signer rollovers, stale jobs) was done only when a request
needed it; ``mcred serve`` now runs it on a schedule (``mcred/housekeeping.py``), and an
operator needs to see, from any process, when each task last ran and what it did
(``mcred doctor``, ``GET /metrics``). Empty at the upgrade (nothing ran on a schedule
before); the downgrade drops the record (the work itself stays done).

Revision ID: i0025taskruns
Revises: i0024tsacrl
Create Date: 2026-12-16 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0025taskruns"
down_revision = "i0024tsacrl"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("task", sa.String(length=64), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seconds", sa.Float(), nullable=False),
        sa.Column("last_ok", sa.Boolean(), nullable=False),
        sa.Column("last_changed", sa.Boolean(), nullable=False),
        sa.Column("last_outcome", sa.String(length=1000), nullable=False),
        sa.Column("last_runner", sa.String(length=200), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("task"),
    )


def downgrade() -> None:
    op.drop_table("task_runs")
