"""jpki challenges, partitions and CRL cache

Revision ID: i0002_jpki
Revises: i0001
Create Date: 2026-11-23 05:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = 'i0002_jpki'
down_revision = 'i0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'jpki_challenges',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('job_ref', sa.String(length=128), nullable=False),
        sa.Column('phone_id', sa.String(length=64), nullable=False),
        sa.Column('slot', sa.String(length=8), nullable=False),
        sa.Column('nonce', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_ref', 'slot', name='uq_jpki_challenge_job_slot'),
    )
    op.create_table(
        'jpki_partitions',
        sa.Column('code', sa.String(length=128), nullable=False),
        sa.Column('prefecture', sa.String(length=64), nullable=False),
        sa.Column('municipality', sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint('code'),
    )
    op.create_table(
        'jpki_crl_cache',
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('partition', sa.String(length=128), nullable=False),
        sa.Column('crl_number', sa.Integer(), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('this_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_update', sa.DateTime(timezone=True), nullable=False),
        sa.Column('stale', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('purpose', 'partition'),
    )


def downgrade() -> None:
    op.drop_table('jpki_crl_cache')
    op.drop_table('jpki_partitions')
    op.drop_table('jpki_challenges')
