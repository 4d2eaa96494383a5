"""issuer_audit: indexes on (action, id) and (actor, id), and on PostgreSQL the two columns
in the "C" collation: ``mcred audit --action P`` / ``--actor A`` (``GET /audit``) read the
actions of P's family (the actors under A) off one range of an index and each one's newest
events off it, where they walked back through the whole audit testing each event (at
105,000 events, 15-30 ms for a rare action or actor, or one never recorded)

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

COLUMNS = (("action", 64), ("actor", 128))


def _collation(collation: str | None) -> None:
    """On PostgreSQL, the columns' collation (SQLite's BINARY already compares code points),
    set before an index is built on them."""
    if op.get_bind().dialect.name == "postgresql":
        for column, length in COLUMNS:
            op.alter_column("issuer_audit", column, type_=sa.String(length, collation=collation),
                            existing_type=sa.String(length), existing_nullable=False)


def upgrade() -> None:
    _collation("C")
    for column, _ in COLUMNS:
        op.create_index(f"ix_issuer_audit_{column}", "issuer_audit", [column, "id"], unique=False)


def downgrade() -> None:
    for column, _ in COLUMNS:
        op.drop_index(f"ix_issuer_audit_{column}", table_name="issuer_audit")
    _collation(None)
