"""interventions.delivered_at: when a redirect message reached the running agent session

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 20:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('interventions') as batch:
        batch.add_column(sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('interventions') as batch:
        batch.drop_column('delivered_at')
