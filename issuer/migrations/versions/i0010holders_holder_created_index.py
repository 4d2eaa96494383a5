"""holders: an index on (created_at, id), the order the holder listings page in (``mcred
holder list``, ``GET /holders``): a page is read off the index instead of sorting every
holder

Revision ID: i0010holders
Revises: i0009crl
Create Date: 2026-12-06 07:45:00
"""

from alembic import op

revision = "i0010holders"
down_revision = "i0009crl"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_holder_created", "holders", ["created_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_holder_created", table_name="holders")
