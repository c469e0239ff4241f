"""specs.published: a digest of what omoi last sent for each of a run's GitHub renderings (check run,
tracking comment, pull request body), so a publish that would send the same again sends nothing

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 18:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('specs') as batch:
        batch.add_column(sa.Column('published', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('specs') as batch:
        batch.drop_column('published')
