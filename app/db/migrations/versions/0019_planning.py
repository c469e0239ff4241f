"""Schema for issue 17 (planning): specs.planning, what the spec flow keeps between its stages: the
clarifying questions and their answers, the quick path, the explore agent's findings

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 21:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('specs', sa.Column('planning', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('specs', 'planning')
