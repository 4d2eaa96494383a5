"""credentials: an index on (issued_at, id), the order every listing of credentials pages in
(``GET /credentials``, ``mcred credential list``): a page is read off the index instead of
sorting the whole table (at 60,000 credentials PostgreSQL sorted 80 MB on disk per page)

Revision ID: i0008issued
Revises: i0007serial
Create Date: 2026-12-06 07:20:00
"""

from alembic import op

revision = "i0008issued"
down_revision = "i0007serial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_credential_issued", "credentials", ["issued_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_credential_issued", table_name="credentials")
