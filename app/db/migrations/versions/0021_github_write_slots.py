"""Schema for spacing content-creating GitHub writes per installation across processes:
github_write_slots, the next free write slot of each installation

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'github_write_slots',
        sa.Column('installation_id', sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column('next_at', sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('github_write_slots')
