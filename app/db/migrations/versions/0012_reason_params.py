"""reasons as a code and its parameters: specs.run_error_params, specs.last_error_params,
spec_tasks.error_params, interventions.reason_params (the text column beside each now holds the
code; a row whose params are NULL holds the English written before, shown as it is)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

COLUMNS = (('specs', 'run_error_params'), ('specs', 'last_error_params'),
           ('spec_tasks', 'error_params'), ('interventions', 'reason_params'))


def upgrade() -> None:
    for table in ('specs', 'spec_tasks', 'interventions'):
        with op.batch_alter_table(table) as batch:
            for t, column in COLUMNS:
                if t == table:
                    batch.add_column(sa.Column(column, sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ('specs', 'spec_tasks', 'interventions'):
        with op.batch_alter_table(table) as batch:
            for t, column in COLUMNS:
                if t == table:
                    batch.drop_column(column)
