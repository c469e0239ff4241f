"""Schema for issue 16 (lifecycle): reserved so work in parallel keeps one linear chain; no change yet

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 20:15:00
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
