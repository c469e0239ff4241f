"""Schema for issue 17 (agents): ci_rounds, the rounds of fixing failing checks on omoi's pull requests

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 20:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'ci_rounds',
        sa.Column('id', _ID, primary_key=True, autoincrement=True),
        sa.Column('spec_id', sa.BigInteger(), sa.ForeignKey('specs.id'), nullable=False),
        sa.Column('round', sa.Integer(), nullable=False),
        sa.Column('head_sha', sa.String(64), nullable=False),
        sa.Column('checks', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('fix_sha', sa.String(64), nullable=True),
        sa.Column('cost_usd', sa.Numeric(12, 6), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('reason_params', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('spec_id', 'head_sha', name='uq_ci_round_head'),
    )
    op.create_index('ix_ci_rounds_spec_id', 'ci_rounds', ['spec_id'])


def downgrade() -> None:
    op.drop_index('ix_ci_rounds_spec_id', table_name='ci_rounds')
    op.drop_table('ci_rounds')
