"""reader_sessions.request: the parameters of a cross-device OpenID4VP session's request
(JSON), which any worker signs as the request object its request_uri serves and checks the
answer's state against

Revision ID: r0004
Revises: r0003
Create Date: 2026-12-04 21:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0004'
down_revision = 'r0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reader_sessions') as batch:
        batch.add_column(sa.Column('request', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reader_sessions') as batch:
        batch.drop_column('request')
