"""Task integration (issue 15): verified task commits waiting for their branch, pushed together.

task_integrations: one row per attempt whose commit waits for the branch; the integrator (whoever
holds the branch's push lock) re-applies every waiting row on the head and pushes once.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 20:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'task_integrations',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('spec_id', sa.BigInteger(), sa.ForeignKey('specs.id'), nullable=False),
        sa.Column('task_id', sa.String(length=16), nullable=False),
        sa.Column('lease_owner', sa.String(length=255), nullable=False),
        sa.Column('change', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
    )
    op.create_index('ix_task_integrations_spec_id', 'task_integrations', ['spec_id'])


def downgrade() -> None:
    op.drop_index('ix_task_integrations_spec_id', table_name='task_integrations')
    op.drop_table('task_integrations')
