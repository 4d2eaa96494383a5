"""tsm_jobs: an index on (created_at, id), the order the job listings page in (``mcred tsm
jobs``, ``GET /tsm-jobs``): a page is read off the index instead of sorting every job

Revision ID: t0005
Revises: t0004
Create Date: 2026-12-06 07:45:00
"""

from alembic import op

revision = 't0005'
down_revision = 't0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tsm_jobs_created', 'tsm_jobs', ['created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tsm_jobs_created', table_name='tsm_jobs')
