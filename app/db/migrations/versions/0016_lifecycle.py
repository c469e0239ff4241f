"""Lifecycle (issue 16): how a spec ends and what an issue edit made stale.

specs.stopped_from: the state a spec was in when its issue was closed or its label removed (a reopen
or relabel resumes from there); specs.completed_at: when its pull request was merged (the closing
summary's time). spec_stages.stale_reason: "edit" on an approved revision written before the issue's
body changed (still the approved revision until it is kept or revised).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 20:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('specs') as batch:
        batch.add_column(sa.Column('stopped_from', sa.String(length=32), nullable=True))
        batch.add_column(sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('spec_stages') as batch:
        batch.add_column(sa.Column('stale_reason', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('spec_stages') as batch:
        batch.drop_column('stale_reason')
    with op.batch_alter_table('specs') as batch:
        batch.drop_column('completed_at')
        batch.drop_column('stopped_from')
