"""api jobs: long work of the HTTP API (issuer.api.jobs.Job)

Revision ID: i0003jobs
Revises: i0001
Create Date: 2026-11-23 05:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0003jobs"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("runner", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_jobs_kind", "api_jobs", ["kind"])
    op.create_index("ix_api_jobs_state", "api_jobs", ["state"])


def downgrade() -> None:
    op.drop_index("ix_api_jobs_state", table_name="api_jobs")
    op.drop_index("ix_api_jobs_kind", table_name="api_jobs")
    op.drop_table("api_jobs")
