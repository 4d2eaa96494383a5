"""issuer_keys.invalid_since: since when a revoked key of the issuer is known or suspected to
have been compromised or otherwise invalid (RFC 5280 5.3.2 invalidityDate), as the operator
gives it (``mcred tsa revoke --invalid-since``, ``TimeStampAuthority.revoke_unit_detail``): the
TSA root's CRL entry for the unit carries it, and a relying party refuses that unit's
time-stamps made from then on, where the revocation's own time alone let them stand. Null for
every key there is (none was given one before); the downgrade drops the dates (the CRL entries
lose their invalidityDate, the revocations stay).

Revision ID: i0023keyinvalid
Revises: i0022keydestroy
Create Date: 2026-12-12 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0023keyinvalid"
down_revision = "i0022keydestroy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_keys") as batch:
        batch.add_column(sa.Column("invalid_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issuer_keys") as batch:
        batch.drop_column("invalid_since")
