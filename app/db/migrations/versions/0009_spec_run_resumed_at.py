"""specs.run_resumed_at: the stall clock restarts when a run is retried, resumed or re-opened

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 21:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('specs') as batch:
        batch.add_column(sa.Column('run_resumed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('specs') as batch:
        batch.drop_column('run_resumed_at')
