"""Structured logging (structlog) with secrets redacted before anything is written."""
from __future__ import annotations

import logging
import sys

import structlog

from app.text.redaction import REDACTED, SHAPES_ONLY, Redactor, redactor  # noqa: F401 - REDACTED is re-exported

# The same redaction as everything sent to GitHub (app/text/redaction.py): the configured secrets in
# every encoding, plus the token shapes GitHub and Anthropic use.
_redactor: Redactor = SHAPES_ONLY


def redact(text: str) -> str:
    return _redactor.text(text)


def set_secrets(secrets: list[str] | None) -> None:
    """The configured secrets to redact from every log line (each in every encoding)."""
    global _redactor
    _redactor = redactor(frozenset(secrets or ()))


def _redact_value(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(v) for v in value)
    return value


def _redact_processor(_logger, _name, event_dict):
    return {k: _redact_value(v) for k, v in event_dict.items()}


def _redact_rendered(_logger, _name, rendered):
    # Last line of defence: exception text is rendered late, so redact the final string too.
    return redact(rendered) if isinstance(rendered, str) else rendered


def configure_logging(level: str = "INFO", json: bool = True, secrets: list[str] | None = None) -> None:
    set_secrets(secrets)
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
            _redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through stdlib logging go through the same redaction.
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_StdlibRedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "alembic", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StdlibRedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def get_logger(name: str = "omoi"):
    return structlog.get_logger(name)
