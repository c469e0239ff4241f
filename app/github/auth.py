"""GitHub App authentication: a JWT from the private key, exchanged for installation tokens.

Installation tokens live an hour; each worker process caches them per installation and
fetches a new one a few minutes before expiry, so a busy worker makes one exchange an hour.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from gidgethub import apps

from app.config import Settings
from app.timeutil import utc_now


class MissingCredentials(RuntimeError):
    pass


@dataclass
class _Token:
    value: str
    expires_at: datetime


class InstallationTokenCache:
    def __init__(self) -> None:
        self._tokens: dict[tuple[str, int], _Token] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def _lock_for(self, key: tuple[str, int]) -> asyncio.Lock:
        # Locks are per event loop; Celery tasks each run their own loop, so key by loop too.
        loop_key = (key, id(asyncio.get_running_loop()))
        lock = self._locks.get(loop_key)  # type: ignore[arg-type]
        if lock is None:
            lock = self._locks[loop_key] = asyncio.Lock()  # type: ignore[index]
        return lock

    def _fresh(self, key: tuple[str, int], margin: int) -> str | None:
        tok = self._tokens.get(key)
        if tok and tok.expires_at - timedelta(seconds=margin) > utc_now():
            return tok.value
        return None

    async def get(self, gh, settings: Settings, installation_id: int) -> str:
        if not settings.github_app_id or not settings.private_key_pem():
            raise MissingCredentials(
                "OMOI_GITHUB_APP_ID and OMOI_GITHUB_PRIVATE_KEY (or _PATH) must be set to call GitHub"
            )
        key = (settings.github_api_url, int(installation_id))
        margin = settings.installation_token_refresh_margin_seconds
        if token := self._fresh(key, margin):
            return token
        async with self._lock_for(key):
            if token := self._fresh(key, margin):
                return token
            data = await apps.get_installation_access_token(
                gh,
                installation_id=str(installation_id),
                app_id=str(settings.github_app_id),
                private_key=settings.private_key_pem(),
            )
            expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
            self._tokens[key] = _Token(data["token"], expires)
            return data["token"]

    def clear(self) -> None:
        self._tokens.clear()


TOKENS = InstallationTokenCache()
