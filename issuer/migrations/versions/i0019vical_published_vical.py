"""mdoc_vicals: the VICAL last signed, per provider, kept in the database so that every API
process serves the same bytes and vicalIssueID only grows across processes and restarts:
each process kept its own, and a reader that refuses a VICAL going back from the one it
holds saw the issue IDs of two workers' VICALs alternate.

Revision ID: i0019vical
Revises: i0018idnorm
Create Date: 2026-12-07 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0019vical"
down_revision = "i0018idnorm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdoc_vicals",
        sa.Column("provider", sa.String(length=128), nullable=False),
        sa.Column("issue_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider"),
    )


def downgrade() -> None:
    op.drop_table("mdoc_vicals")
