"""api_tokens: an optional expiry (``expires_at``), after which the token is refused as a
revoked one is: a relying party's or an operator's service account given for a term

Revision ID: i0011expiry
Revises: i0010holders
Create Date: 2026-12-06 08:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0011expiry"
down_revision = "i0010holders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
