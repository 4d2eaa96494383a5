"""issuer_audit: an index on (action, id), and on PostgreSQL the action in the "C"
collation: ``mcred audit --action P`` (``GET /audit?action=``) reads the actions of P's
family off one range of the index and each one's newest events off it, where it walked
back through the whole audit testing each event (at 105,000 events, 20-30 ms for a rare
action or one that never happened)

Revision ID: i0012auditidx
Revises: i0011expiry
Create Date: 2026-12-06 09:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0012auditidx"
down_revision = "i0011expiry"
branch_labels = None
depends_on = None


def _collation(collation: str | None) -> None:
    """On PostgreSQL, the action's collation (SQLite's BINARY already compares code points),
    set before the index is built on it."""
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("issuer_audit", "action", type_=sa.String(64, collation=collation),
                        existing_type=sa.String(64), existing_nullable=False)


def upgrade() -> None:
    _collation("C")
    op.create_index("ix_issuer_audit_action", "issuer_audit", ["action", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_issuer_audit_action", table_name="issuer_audit")
    _collation(None)
