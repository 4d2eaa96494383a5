"""GP SERAM relay tables: sessions and the messages relayed between a service's processes

Revision ID: t0003
Revises: t0002
Create Date: 2026-12-05 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = 't0003'
down_revision = 't0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tsm_seram_sessions',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('session_id')
    )
    op.create_index(op.f('ix_tsm_seram_sessions_owner'), 'tsm_seram_sessions', ['owner'], unique=False)
    op.create_table('tsm_seram_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('owner', sa.String(length=32), nullable=False),
    sa.Column('route', sa.String(length=16), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('seen', sa.Integer(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('answer', sa.LargeBinary(), nullable=True),
    sa.Column('number', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_tsm_seram_messages_owner'), 'tsm_seram_messages', ['owner'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_tsm_seram_messages_owner'), table_name='tsm_seram_messages')
    op.drop_table('tsm_seram_messages')
    op.drop_index(op.f('ix_tsm_seram_sessions_owner'), table_name='tsm_seram_sessions')
    op.drop_table('tsm_seram_sessions')
