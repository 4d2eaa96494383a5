"""published identifier list tokens (ISO/IEC 18013-5 2nd edition identifier_list)

Revision ID: i0005idlist
Revises: i0004dsrev
Create Date: 2026-12-03 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0005idlist"
down_revision = "i0004dsrev"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identifier_list_tokens",
        sa.Column("list_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["status_lists.id"]),
        sa.PrimaryKeyConstraint("list_id"),
    )


def downgrade() -> None:
    op.drop_table("identifier_list_tokens")
