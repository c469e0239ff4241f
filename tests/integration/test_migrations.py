"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL
(a column added to a model without a migration, or the other way round, fails here, not in production)."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.db.migrate import upgrade
from app.db.models import Base


@pytest.mark.empty_database  # the migrations themselves must build the schema, from nothing
def test_migrations_match_the_models(database_url):
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
