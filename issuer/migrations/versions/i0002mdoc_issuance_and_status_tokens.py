"""mdoc issuance ledger, device-key challenges and published status list tokens

Revision ID: i0002mdoc
Revises: i0001
Create Date: 2026-11-23 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0002mdoc"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdoc_issuances",
        sa.Column("job_ref", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("phone_id", sa.String(length=64), nullable=False),
        sa.Column("credential_id", sa.String(length=32), nullable=False),
        sa.Column("device_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["credential_id"], ["credentials.id"]),
        sa.PrimaryKeyConstraint("job_ref", "slot"),
        sa.UniqueConstraint("credential_id"),
    )
    op.create_index(op.f("ix_mdoc_issuances_phone_id"), "mdoc_issuances", ["phone_id"])
    op.create_index(
        op.f("ix_mdoc_issuances_device_key_sha256"), "mdoc_issuances", ["device_key_sha256"]
    )
    op.create_table(
        "mdoc_challenges",
        sa.Column("job_ref", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("phone_id", sa.String(length=64), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_ref", "slot"),
    )
    op.create_table(
        "status_list_tokens",
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
    op.drop_table("status_list_tokens")
    op.drop_table("mdoc_challenges")
    op.drop_index(op.f("ix_mdoc_issuances_device_key_sha256"), table_name="mdoc_issuances")
    op.drop_index(op.f("ix_mdoc_issuances_phone_id"), table_name="mdoc_issuances")
    op.drop_table("mdoc_issuances")
