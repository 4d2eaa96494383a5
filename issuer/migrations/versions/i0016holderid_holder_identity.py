"""holders.identity: who a holder registered from a holder file (which names no card) is,
SHA-256 hex of the identity fields (``issuer.holders.identity_of``), under a unique index,
so that the same person provisioned again from a holder file is the holder registered
already (and the one-phone rule refuses a second phone) where each run registered a new
holder. Filled for the holders there are, oldest first: a person registered more than once
before this keeps their first record as the one matched, the later ones none (they stay
apart, as they were); an erased record (``mcred holder forget``) gets none.

Revision ID: i0016holderid
Revises: i0015iacagen
Create Date: 2026-12-08 07:00:00
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "i0016holderid"
down_revision = "i0015iacagen"
branch_labels = None
depends_on = None


def identity_of(data: dict) -> str:
    """The identity as this revision defined it, frozen here: SHA-256 hex of the identity
    fields' text as stored, in a canonical JSON (i0018idnorm normalises it later)."""
    fields = ("family_name", "given_name", "family_name_kana", "given_name_kana", "birth_date",
              "sex", "address", "prefecture", "municipality")
    values = [data[k] for k in fields]
    values[fields.index("sex")] = int(values[fields.index("sex")])
    return hashlib.sha256(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def upgrade() -> None:
    from issuer.holders import is_erased

    with op.batch_alter_table("holders") as batch:
        batch.add_column(sa.Column("identity", sa.String(64), nullable=True))
    conn = op.get_bind()
    seen: set[str] = set()
    rows = conn.execute(sa.text("SELECT id, data FROM holders ORDER BY created_at, id")).all()
    for holder_id, data in rows:
        data = json.loads(data) if isinstance(data, str) else data
        if not isinstance(data, dict) or is_erased(data):
            continue
        try:
            identity = identity_of(data)
        except (KeyError, TypeError, ValueError):  # a record without the identity fields
            continue
        if identity in seen:
            continue
        seen.add(identity)
        conn.execute(sa.text("UPDATE holders SET identity = :i WHERE id = :h"), {"i": identity, "h": holder_id})
    op.create_index("ux_holder_identity", "holders", ["identity"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_holder_identity", table_name="holders")
    with op.batch_alter_table("holders") as batch:
        batch.drop_column("identity")
