"""Structured logging (structlog) with secrets redacted before anything is written."""
from __future__ import annotations

import logging
import re
import sys

import structlog

# Token shapes GitHub and Anthropic use; redacted even when we did not configure them ourselves.
_TOKEN_RE = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{10,}|github_pat_[A-Za-z0-9_]{20,}|sk-ant-[A-Za-z0-9_\-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,})"
)
REDACTED = "[REDACTED]"
_known_secrets: list[str] = []


def redact(text: str) -> str:
    for secret in _known_secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_RE.sub(REDACTED, text)


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
    _known_secrets[:] = [s for s in (secrets or []) if len(s) >= 6]
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
