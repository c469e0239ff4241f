"""webhook_deliveries.raw_body and .signature: the worker verifies a stored delivery before routing it

Rows stored before this migration have no signature, so the worker refuses them ("integrity check
failed"): drain the queue before upgrading.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('raw_body', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('signature', sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('signature')
        batch.drop_column('raw_body')
