"""jpki_consents: holders' consents to the latest basic four data service (最新の利用者情報提供)

Revision ID: i0006consent
Revises: i0002_jpki
Create Date: 2026-12-05 04:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0006consent"
down_revision = "i0002_jpki"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jpki_consents",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("holder_id", sa.String(length=32), nullable=False),
        sa.Column("relying_party", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("signer_serial", sa.String(length=64), nullable=False),
        sa.Column("signer_credential", sa.String(length=32), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(length=160), nullable=True),
        sa.ForeignKeyConstraint(["holder_id"], ["holders.id"]),
        sa.ForeignKeyConstraint(["signer_credential"], ["credentials.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("document_sha256"),
    )
    op.create_index(op.f("ix_jpki_consents_holder_id"), "jpki_consents", ["holder_id"], unique=False)
    op.create_index(op.f("ix_jpki_consents_relying_party"), "jpki_consents", ["relying_party"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_jpki_consents_relying_party"), table_name="jpki_consents")
    op.drop_index(op.f("ix_jpki_consents_holder_id"), table_name="jpki_consents")
    op.drop_table("jpki_consents")
