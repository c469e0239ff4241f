"""Run view (issue 16): every attempt's transcript of a task, kept after a retry for the status page.

task_transcripts: one row per (spec, task, attempt), the agent's messages and tool calls as the worker's
heartbeat last wrote them (app/db/transcripts.py), with the attempt's cost so far.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 20:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'task_transcripts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('spec_id', sa.BigInteger(), sa.ForeignKey('specs.id'), nullable=False),
        sa.Column('task_id', sa.String(length=16), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('entries', sa.JSON(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('cost_usd', sa.Numeric(12, 6), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('spec_id', 'task_id', 'attempt', name='uq_task_transcript'),
    )
    op.create_index('ix_task_transcripts_spec_id', 'task_transcripts', ['spec_id'])


def downgrade() -> None:
    op.drop_index('ix_task_transcripts_spec_id', table_name='task_transcripts')
    op.drop_table('task_transcripts')
