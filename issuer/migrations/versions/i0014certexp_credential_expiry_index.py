"""credentials: an index on (kind, not_after) of the valid credentials (partial: ``WHERE
status = 'valid'``), what the expiry notices look the valid certificates of a kind expiring
by a day up by (``mcred credential list --expiring-within``, ``GET
/credentials?expiring_within=``): one range of the index per kind, where every valid
credential was read (every phone's mdocs among them, whose 30-day MSOs all fall within any
notice's horizon). Partial, so that no other look-up by kind and status (a CRL's revoked
certificates, a listing by kind) is taken off it

Revision ID: i0014certexp
Revises: i0013wflease
Create Date: 2026-12-07 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0014certexp"
down_revision = "i0013wflease"
branch_labels = None
depends_on = None


def upgrade() -> None:
    valid = sa.text("status = 'valid'")
    op.create_index("ix_credential_expiry", "credentials", ["kind", "not_after"], unique=False,
                    sqlite_where=valid, postgresql_where=valid)


def downgrade() -> None:
    op.drop_index("ix_credential_expiry", table_name="credentials")
