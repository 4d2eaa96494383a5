"""reader branch root: reader_sessions

Revision ID: r0001
Revises: (none)
Create Date: 2026-12-03 23:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0001'
down_revision = None
branch_labels = ('reader',)
depends_on = None


def upgrade() -> None:
    op.create_table('reader_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('transcript', sa.LargeBinary(), nullable=False),
    sa.Column('e_reader_key', sa.LargeBinary(), nullable=True),
    sa.Column('verdict', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_reader_sessions_created_at'), 'reader_sessions', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_reader_sessions_created_at'), table_name='reader_sessions')
    op.drop_table('reader_sessions')
