"""credentials: an index on serial, for the look-ups by serial alone (the user-authentication
certificate linkage service, issuer.jpki.linkage)

Revision ID: i0007serial
Revises: i0001
Create Date: 2026-12-05 07:00:00
"""

from alembic import op

revision = "i0007serial"
down_revision = "i0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_credential_serial", "credentials", ["serial"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_credential_serial", table_name="credentials")
