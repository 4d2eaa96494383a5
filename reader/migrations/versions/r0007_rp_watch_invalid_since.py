"""rp_watch and rp_watch_events: invalid_since, the invalidity date a revoked certificate's
CRL entry or OCSP answer gives (RFC 5280 5.3.2: since when its key was out of the holder's
control), kept with its last status and with each change; the issuer amends a revocation
(another reason to keyCompromise, an earlier invalidity date), so a relying party learns
which archived signatures (those made after it) are no longer to be trusted. Rows from
before have none: the next sweep asks their revoked certificates again and records the date
as a change where the evidence gives one.

Revision ID: r0007
Revises: r0006
Create Date: 2026-12-07 12:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0007'
down_revision = 'r0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('rp_watch', 'rp_watch_events'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('invalid_since', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ('rp_watch_events', 'rp_watch'):
        with op.batch_alter_table(table) as batch:
            batch.drop_column('invalid_since')
