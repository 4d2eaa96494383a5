"""tsa_root_crls: the CRL each time-stamping root generation signed last (``issuer.tsa``).

The TSA's root rolls over (``mcred tsa rollover``): an older root keeps signing the CRL of the
units it certified (``/tsa/root-gN.crl``) until they have all expired, and its key may then be
destroyed. A CRL kept only in the memory of the process that signed it could then be served by
no other process and no restart; kept here, it is served until an hour before its nextUpdate
(as a JPKI root generation's or an IACA's CRL is), and its cRLNumber only grows across
processes. Empty at the upgrade (every CRL is signed again on its next request); the downgrade
drops the CRLs (the next request signs one again where the key is still held).

Revision ID: i0024tsacrl
Revises: i0023keyinvalid
Create Date: 2026-12-14 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0024tsacrl"
down_revision = "i0023keyinvalid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tsa_root_crls",
        sa.Column("root_label", sa.String(length=64), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("root_label"),
    )


def downgrade() -> None:
    op.drop_table("tsa_root_crls")
