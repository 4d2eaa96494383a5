"""reader_vicals: the last VICAL a reader of this database took, per vicalProvider, so that a
restarted reader and each worker of ``--workers N`` refuse a VICAL that goes back from what
any process on the database took (a replayed, older VICAL still before its nextUpdate)

Revision ID: r0008
Revises: r0007
Create Date: 2026-12-07 13:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0008'
down_revision = 'r0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reader_vicals',
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('issue_id', sa.BigInteger(), nullable=True),
    sa.Column('date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('digest', sa.LargeBinary(), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('provider')
    )


def downgrade() -> None:
    op.drop_table('reader_vicals')
