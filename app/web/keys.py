"""The typed keys under which create_app (app/web/server.py) keeps what the handlers share."""
from __future__ import annotations

from aiohttp import web

from app.config import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)
CELERY_KEY = web.AppKey("celery", object)  # a broker client only: the web process runs no tasks
DB_METRICS_KEY = web.AppKey("db_metrics", object)
WRITER_KEY = web.AppKey("delivery_writer", object)
