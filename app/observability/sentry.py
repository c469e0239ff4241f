"""Optional error reporting: Sentry when OMOI_SENTRY_DSN is set and sentry-sdk is installed
(`pip install '.[sentry]'`). Without either, nothing happens and nothing is imported."""
from __future__ import annotations

import importlib

from app.config import Settings
from app.observability.logs import _redact_value, get_logger

log = get_logger("omoi.observability")


def _before_send(event, _hint):
    # Events carry exception messages and local variables: same redaction as the logs.
    return _redact_value(event)


def init_sentry(settings: Settings, process: str) -> bool:
    """Returns True when Sentry was initialised for this process."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    try:
        sentry_sdk = importlib.import_module("sentry_sdk")
    except ImportError:
        log.warning("sentry_sdk_missing", hint="pip install 'omoi[sentry]' to report errors to Sentry")
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment or None,
        send_default_pii=False,
        before_send=_before_send,
        server_name=None,
    )
    sentry_sdk.set_tag("omoi.process", process)
    log.info("sentry_enabled", process=process)
    return True
