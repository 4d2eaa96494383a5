"""tsm branch root

Revision ID: t0001
Revises: (none)
Create Date: 2026-11-23 04:49:00.928136
"""



revision = 't0001'
down_revision = None
branch_labels = ('tsm',)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
