"""reader_sessions.claimed_at: when a worker took the SessionData (an interrupted
verification is ended after a limit instead of staying pending until the session expires)

Revision ID: r0002
Revises: r0001
Create Date: 2026-12-04 01:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0002'
down_revision = 'r0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reader_sessions') as batch:
        batch.add_column(sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reader_sessions') as batch:
        batch.drop_column('claimed_at')
