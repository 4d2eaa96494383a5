"""credentials: an index on (issuer_key, partition, status), what a CRL's entries are looked
up by (issuer.jpki.publication.revocations): a rebuild reads its partition's revoked and
held certificates instead of every certificate of the issuing key in every partition

Revision ID: i0009crl
Revises: i0008issued
Create Date: 2026-12-06 07:35:00
"""

from alembic import op

revision = "i0009crl"
down_revision = "i0008issued"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_credential_crl", "credentials", ["issuer_key", "partition", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_credential_crl", table_name="credentials")
