"""rp_challenges: the JPKI relying party's user-authentication challenges (one answer each,
before they expire), shared by every worker on the database

Revision ID: r0003
Revises: r0002
Create Date: 2026-12-04 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0003'
down_revision = 'r0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rp_challenges',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rp_challenges_expires_at'), 'rp_challenges', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_rp_challenges_expires_at'), table_name='rp_challenges')
    op.drop_table('rp_challenges')
