"""credentials.invalid_since: of a credential revoked for good while it was on hold (a lost
phone found, whose signing certificate is revoked; a loss confirmed), when it went on hold,
which the JPKI CRL entry and the OCSP answer carry as invalidityDate (RFC 5280 5.3.2), so
that a relying party refuses a signature time-stamped during the hold rather than pass it as
made before the revocation. Filled for the credentials revoked from a hold before this, from
the audit trail: a revocation whose credential's previous hold, release or revocation event
is a hold gets that hold's time (the audit row's; a hold given another time than its own
event's, as a test does, is not known); a released hold leaves none.

Revision ID: i0017invalid
Revises: i0016holderid
Create Date: 2026-12-09 07:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "i0017invalid"
down_revision = "i0016holderid"
branch_labels = None
depends_on = None

def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("invalid_since", sa.DateTime(timezone=True), nullable=True))
    conn = op.get_bind()
    revoked = {row[0] for row in conn.execute(sa.text("SELECT id FROM credentials WHERE status = 'revoked'"))}
    if not revoked:
        return
    last: dict[str, tuple[str, object]] = {}  # subject -> its newest event so far (action, at)
    since: dict[str, object] = {}
    events = conn.execute(sa.text("SELECT subject, action, at FROM issuer_audit WHERE action IN "
                                  "('credential.hold', 'credential.release', 'credential.revoke') "
                                  "ORDER BY subject, at, id"))
    for subject, action, at in events:
        if subject not in revoked:
            continue
        if action == "credential.revoke":
            previous = last.get(subject)
            if previous is not None and previous[0] == "credential.hold":
                since[subject] = previous[1]
        last[subject] = (action, at)
    for credential, at in since.items():
        conn.execute(sa.text("UPDATE credentials SET invalid_since = :at WHERE id = :id"),
                     {"at": at, "id": credential})


def downgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("invalid_since")
