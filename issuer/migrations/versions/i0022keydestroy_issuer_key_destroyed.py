"""issuer_keys.key_destroyed_at: when the issuer destroyed a signer's private key (``mcred mdoc
key destroy``, ``MdocPki.destroy_key``), in a key-compromise procedure (CA/B Forum BR 6.2,
ETSI EN 319 411 key destruction) or once no duty needs it. The row and its certificate stay:
the certificate is still published (``/trust/iaca-N.pem``, the listings, the CRL chains),
read from the row, never through the key. Null for every key there is (none was destroyed
before); the downgrade drops the record (the keys destroyed stay destroyed).

Revision ID: i0022keydestroy
Revises: i0021blocknum
Create Date: 2026-12-10 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0022keydestroy"
down_revision = "i0021blocknum"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_keys") as batch:
        batch.add_column(sa.Column("key_destroyed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("key_destroyed_at")
