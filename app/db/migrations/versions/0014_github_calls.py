"""github_cache: what omoi knows of GitHub without asking again (repository metadata and config per
installation, its own comments by marker, the branch heads it pushed), issue 15

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 20:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'github_cache',
        sa.Column('key', sa.String(length=512), nullable=False),
        sa.Column('value', sa.JSON(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('key'),
    )


def downgrade() -> None:
    op.drop_table('github_cache')
