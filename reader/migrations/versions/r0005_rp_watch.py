"""rp_watch and rp_watch_events: the JPKI relying party's revocation watch list (its
customers' certificates with their last known status) and every change of status it saw

Revision ID: r0005
Revises: r0004
Create Date: 2026-12-05 04:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = 'r0005'
down_revision = 'r0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rp_watch',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=128), nullable=False),
    sa.Column('purpose', sa.String(length=4), nullable=False),
    sa.Column('serial', sa.String(length=42), nullable=False),
    sa.Column('issuer_key_id', sa.String(length=128), nullable=False),
    sa.Column('certificate', sa.LargeBinary(), nullable=False),
    sa.Column('not_after', sa.DateTime(timezone=True), nullable=False),
    sa.Column('crl_url', sa.Text(), nullable=True),
    sa.Column('dp_names', sa.Text(), nullable=False),
    sa.Column('ocsp_url', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref', 'issuer_key_id', 'serial', name='uq_rp_watch_cert')
    )
    op.create_index(op.f('ix_rp_watch_ref'), 'rp_watch', ['ref'], unique=False)
    op.create_index(op.f('ix_rp_watch_status'), 'rp_watch', ['status'], unique=False)
    op.create_table('rp_watch_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=128), nullable=False),
    sa.Column('serial', sa.String(length=42), nullable=False),
    sa.Column('purpose', sa.String(length=4), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('before', sa.String(length=16), nullable=True),
    sa.Column('after', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rp_watch_events_ref'), 'rp_watch_events', ['ref'], unique=False)
    op.create_index(op.f('ix_rp_watch_events_seen_at'), 'rp_watch_events', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_rp_watch_events_seen_at'), table_name='rp_watch_events')
    op.drop_index(op.f('ix_rp_watch_events_ref'), table_name='rp_watch_events')
    op.drop_table('rp_watch_events')
    op.drop_index(op.f('ix_rp_watch_status'), table_name='rp_watch')
    op.drop_index(op.f('ix_rp_watch_ref'), table_name='rp_watch')
    op.drop_table('rp_watch')
