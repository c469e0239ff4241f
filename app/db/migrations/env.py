"""Alembic environment: runs against the connection handed over by app.db.migrate."""
from alembic import context

from app.db.models import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")

if connection is None:  # `alembic` CLI use: build an engine from the URL in the config
    from sqlalchemy import create_engine

    from app.db.session import normalise_url

    engine = create_engine(normalise_url(context.config.get_main_option("sqlalchemy.url")))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
