"""rp_watch: the successor a replaced user-authentication certificate was linked to (the
linkage service, 利用者証明用電子証明書の新旧紐付け) and when

Revision ID: r0006
Revises: r0005
Create Date: 2026-12-05 07:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0006'
down_revision = 'r0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('rp_watch') as batch:
        batch.add_column(sa.Column('successor', sa.String(length=42), nullable=True))
        batch.add_column(sa.Column('linked_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rp_watch') as batch:
        batch.drop_column('linked_at')
        batch.drop_column('successor')
