"""Schema for issue 17 (retry with feedback, validation): task_attempts, what each attempt of a task left
for the next one and the diagnosis after the last

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 21:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'task_attempts',
        sa.Column('id', _ID, primary_key=True, autoincrement=True),
        sa.Column('spec_id', sa.BigInteger(), sa.ForeignKey('specs.id'), nullable=False),
        sa.Column('task_id', sa.String(16), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('error_params', sa.JSON(), nullable=True),
        sa.Column('feedback', sa.JSON(), nullable=False),
        sa.Column('side_ref', sa.String(255), nullable=True),
        sa.Column('diagnosis', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_task_attempts_spec_id', 'task_attempts', ['spec_id'])


def downgrade() -> None:
    op.drop_index('ix_task_attempts_spec_id', table_name='task_attempts')
    op.drop_table('task_attempts')
