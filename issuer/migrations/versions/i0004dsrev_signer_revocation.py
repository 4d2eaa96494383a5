"""mdoc signer revocation: revocation columns on issuer_keys, the cached IACA CRL

Revision ID: i0004dsrev
Revises: i0002mdoc
Create Date: 2026-12-03 08:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0004dsrev"
down_revision = "i0002mdoc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_keys") as batch:
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revocation_reason", sa.String(length=32), nullable=True))
    op.create_table(
        "mdoc_iaca_crls",
        sa.Column("iaca_label", sa.String(length=64), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stale", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("iaca_label"),
    )


def downgrade() -> None:
    op.drop_table("mdoc_iaca_crls")
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("revocation_reason")
        batch.drop_column("revoked_at")
