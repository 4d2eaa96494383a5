"""status_lists.iaca_label: the IACA generation of each list's mdocs, so that a list is signed
by a status-list signer of the IACA the mdocs' document signers chain to (a reader takes a
list only from a signer under the mdoc's own IACA) and an IACA rollover opens new lists.
Lists made before IACA generations existed hold mdocs of the first IACA, ``mdoc-iaca-1``
(no code path made another one).

Revision ID: i0015iacagen
Revises: i0014certexp
Create Date: 2026-12-07 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0015iacagen"
down_revision = "i0014certexp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("status_lists") as batch:
        batch.add_column(sa.Column("iaca_label", sa.String(64), nullable=True))
    op.execute("UPDATE status_lists SET iaca_label = 'mdoc-iaca-1' WHERE iaca_label IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("status_lists") as batch:
        batch.drop_column("iaca_label")
