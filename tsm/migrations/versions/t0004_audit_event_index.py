"""tsm_audit: an index on (event, id), for the last records of one event (``mcred tsm audit
--event``, ``GET /tsm-audit?event=``): the table holds every command the TSM sent (some 90
records a provisioning), and a rare event (a counter regression, a cleared quarantine) was
found by walking back through all of them

Revision ID: t0004
Revises: t0003
Create Date: 2026-12-06 07:25:00
"""

from alembic import op

revision = 't0004'
down_revision = 't0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tsm_audit_event', 'tsm_audit', ['event', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_tsm_audit_event', table_name='tsm_audit')
