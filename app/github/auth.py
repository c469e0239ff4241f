"""GitHub App authentication: a JWT from the private key, exchanged for installation tokens.

Installation tokens live an hour; each process caches them per installation and fetches a new one
a few minutes before expiry. Processes share them through the database (app/github/cache.py),
encrypted with a key derived from the App's private key: a reader of the database alone learns
nothing usable, and whoever holds the private key can mint tokens anyway. So a deployment makes one
exchange an hour per installation, however many worker processes it runs.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from gidgethub import apps

from app.config import Settings
from app.github import cache
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

    @staticmethod
    def _box(settings: Settings) -> Fernet:
        key = hashlib.sha256(b"omoi installation tokens\0" + settings.private_key_pem().encode()).digest()
        return Fernet(base64.urlsafe_b64encode(key))

    def _shared(self, settings: Settings, key: tuple[str, int], margin: int) -> str | None:
        """A token another process minted (the database's copy), if it is still fresh."""
        stored = cache.get(settings.database_url, f"token:{key[0]}:{key[1]}")
        if not isinstance(stored, dict):
            return None
        try:
            value = self._box(settings).decrypt(stored["token"].encode()).decode()
            expires = datetime.fromisoformat(stored["expires_at"])
        except (InvalidToken, KeyError, ValueError):
            return None
        self._tokens[key] = _Token(value, expires)
        return self._fresh(key, margin)

    def _share(self, settings: Settings, key: tuple[str, int], token: _Token) -> None:
        seconds = (token.expires_at - utc_now()).total_seconds()
        if seconds > 0:
            cache.put(settings.database_url, f"token:{key[0]}:{key[1]}",
                      {"token": self._box(settings).encrypt(token.value.encode()).decode(),
                       "expires_at": token.expires_at.isoformat()}, seconds)

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
            if token := self._fresh(key, margin) or self._shared(settings, key, margin):
                return token
            data = await apps.get_installation_access_token(
                gh,
                installation_id=str(installation_id),
                app_id=str(settings.github_app_id),
                private_key=settings.private_key_pem(),
            )
            expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
            self._tokens[key] = _Token(data["token"], expires)
            self._share(settings, key, self._tokens[key])
            return data["token"]

    def clear(self) -> None:
        self._tokens.clear()


TOKENS = InstallationTokenCache()
