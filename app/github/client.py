"""The one way omoi talks to GitHub: gidgethub with base_url from settings, plus retries and redaction.

Retries live at the transport layer (`_request`) so every gidgethub call - get, post,
getiter, graphql - honours `retry-after`, primary rate limits and transient 5xx alike.
Redaction lives there too, for the same reason: every request body (comments, check runs, pull
requests, GraphQL variables, whatever the caller) loses every configured secret and the client's
own live credentials, in every encoding (app/text/redaction.py), before it leaves the process.

Fewer calls (issue 15): every GET carries the ETag of the last answer to the same URL (a bounded
per-process cache per installation, gidgethub's `cache`), so an unchanged resource costs a 304, which
GitHub does not count against the rate limit; the repository and its `.github/omoi.yml` are answered
from the database (app/github/cache.py) until an event says they changed. Content-creating writes
(new comments, check runs, pull requests, reactions) are spaced WRITE_SPACING_SECONDS apart per
installation, as GitHub asks integrators to, across every omoi process: one queue per installation in
the database (app/github/write_slots.py). Should the database not answer, a write is spaced within its
own process only, rather than not sent.
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import http
import re
import time
from collections import OrderedDict
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Mapping
from urllib.parse import unquote

import aiohttp
import gidgethub
from gidgethub import sansio
from gidgethub.aiohttp import GitHubAPI
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.github import cache, write_slots
from app.github.auth import TOKENS
from app.observability.logs import get_logger
from app.text.redaction import redactor_for
from app.observability.metrics import GITHUB_REQUESTS

log = get_logger("omoi.github")
RETRY_STATUSES = {500, 502, 503, 504}
USER_AGENT = "omoi-github-app"
# GitHub's current media type and a pinned REST API version: a breaking change on GitHub's side
# comes with a new version string, not silently (gidgethub still sends the old v3 type by default).
ACCEPT = "application/vnd.github+json"
API_VERSION = "2022-11-28"
_OLD_ACCEPT = "application/vnd.github.v3+json"
WRITE_SPACING_SECONDS = 1.0
ETAG_ENTRIES = 512  # per installation and process
# POSTs that create content a person sees (GitHub's secondary rate limits punish bursts of these).
_CREATES = re.compile(r"/repos/[^/]+/[^/]+/(issues/\d+/comments|issues/(comments/)?\d+/reactions|check-runs|pulls)$")
_last_create: dict[int | None, float] = {}  # the per-process fallback (and app-level calls)
_slots_down = False  # one warning per outage of the shared queue, not one per write


class LRU(OrderedDict):
    """A bounded mapping that forgets the least recently used entry (gidgethub's ETag cache)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.move_to_end(key)
        return copy.deepcopy(value)  # a caller that changes what a 304 gave it never changes the cache

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


_ETAGS: dict[int | None, LRU] = {}


def etag_cache(installation_id: int | None) -> LRU:
    if installation_id not in _ETAGS:
        _ETAGS[installation_id] = LRU(ETAG_ENTRIES)
    return _ETAGS[installation_id]


def retry_delay(status: int, headers: Mapping[str, str], attempt: int, now: float | None = None) -> float | None:
    """Seconds to wait before retrying this response, or None when it should not be retried."""
    now = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return None
    if status in (403, 429) and headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset")
        if reset and reset.isdigit():
            return max(0.0, int(reset) - now) + 1
        return 60.0
    if status == 429 or status in RETRY_STATUSES:
        return min(2 ** attempt * 0.5, 8.0)
    return None


# Set by `single_attempt()`: a POST whose answer is lost (5xx, connection error) is not re-sent
# here, because GitHub may have done it; the caller checks before trying again (app/github/comments.py).
_SINGLE_ATTEMPT: contextvars.ContextVar[bool] = contextvars.ContextVar("omoi_single_attempt", default=False)


@contextmanager
def single_attempt():
    token = _SINGLE_ATTEMPT.set(True)
    try:
        yield
    finally:
        _SINGLE_ATTEMPT.reset(token)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _modern(headers: Mapping[str, str]) -> dict[str, str]:
    """gidgethub's headers with today's Accept (a caller's special media type is kept) and the API version."""
    out = {k: v for k, v in headers.items() if not (k.lower() == "accept" and v == _OLD_ACCEPT)}
    names = {k.lower() for k in out}
    if "accept" not in names:
        out["accept"] = ACCEPT
    if "x-github-api-version" not in names:
        out["x-github-api-version"] = API_VERSION
    return out


class OmoiGitHubAPI(GitHubAPI):
    def __init__(self, session: aiohttp.ClientSession, settings: Settings, installation_id: int | None = None,
                 **kwargs) -> None:
        kwargs.setdefault("cache", etag_cache(installation_id))
        super().__init__(session, USER_AGENT, base_url=settings.github_api_url, **kwargs)
        self.settings = settings
        self.installation_id = installation_id

    async def _make_request(self, method, url, url_vars, data, accept, *args, **kwargs):
        """The repository and its omoi.yml come from the database while they are known (app/github/cache.py)."""
        key = None
        if method == "GET" and self.installation_id is not None and data == b"":
            filled = sansio.format_url(url, url_vars, base_url=self.base_url)
            if filled.startswith(self.base_url):  # the path as GitHub reads it (`.github%2Fomoi.yml` too)
                key = cache.resource_key(self.installation_id, unquote(filled[len(self.base_url):]))
        if key is None:
            return await super()._make_request(method, url, url_vars, data, accept, *args, **kwargs)
        db = self.settings.database_url
        hit = cache.get(db, key)
        if hit is not None:
            if hit.get("status") == 404:
                raise gidgethub.BadRequest(http.HTTPStatus.NOT_FOUND, "Not Found")
            return hit["data"], None, 200
        try:
            result = await super()._make_request(method, url, url_vars, data, accept, *args, **kwargs)
        except gidgethub.BadRequest as exc:
            if exc.status_code == 404:
                cache.put(db, key, {"status": 404}, cache.RESOURCE_SECONDS)
            raise
        cache.put(db, key, {"status": 200, "data": result[0]}, cache.RESOURCE_SECONDS)
        return result

    async def _space(self, method: str, url: str) -> None:
        global _slots_down
        if method != "POST" or not _CREATES.search(url.split("?", 1)[0]):
            return
        if self.installation_id is not None:
            try:
                wait = await asyncio.to_thread(write_slots.reserve, self.settings.database_url,
                                               self.installation_id, WRITE_SPACING_SECONDS)
            except (SQLAlchemyError, OSError) as exc:
                if not _slots_down:
                    log.warning("github_write_slots_unavailable", error=exc.__class__.__name__)
                _slots_down = True
            else:
                _slots_down = False
                if wait > 0:
                    await asyncio.sleep(wait)
                return
        wait = _last_create.get(self.installation_id, 0.0) + WRITE_SPACING_SECONDS - time.monotonic()
        _last_create[self.installation_id] = time.monotonic() + max(0.0, wait)
        if wait > 0:
            await asyncio.sleep(wait)

    def _outbound(self, headers: Mapping[str, str], body: bytes) -> tuple[Mapping[str, str], bytes]:
        """The body with every secret redacted (the headers, credentials included, untouched but
        for the length). The live credentials: this client's installation token and App JWT, and
        whatever token this one request carries (gidgethub passes some per call)."""
        if isinstance(body, str):  # a non-JSON body gidgethub passes through as the caller gave it
            body = body.encode("utf-8")
        extra = [self.oauth_token, getattr(self, "_app_jwt", None)]
        for name, value in headers.items():
            if name.lower() == "authorization":
                extra.append(value.partition(" ")[2].strip())
        redacted = redactor_for(self.settings, extra).body(body, _header(headers, "content-type"))
        if redacted is body and _header(headers, "content-length") == str(len(body)):
            return headers, body
        headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        headers["content-length"] = str(len(redacted))
        return headers, redacted

    async def _request(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""):
        headers = _modern(headers)
        if body:
            headers, body = self._outbound(headers, body)
        await self._space(method, url)
        attempt = 0
        while True:
            try:
                status, resp_headers, data = await super()._request(method, url, headers, body)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt >= self.settings.github_max_retries or (method == "POST" and _SINGLE_ATTEMPT.get()):
                    raise
                delay = min(2 ** attempt * 0.5, 8.0)
                log.warning("github_connection_retry", method=method, url=url, error=str(exc), delay=delay)
            else:
                GITHUB_REQUESTS.labels(method, str(status)).inc()
                delay = retry_delay(status, resp_headers, attempt)
                if (
                    delay is None
                    or attempt >= self.settings.github_max_retries
                    or (method == "POST" and status in RETRY_STATUSES and _SINGLE_ATTEMPT.get())
                    or delay > self.settings.github_retry_max_wait_seconds
                ):
                    return status, resp_headers, data
                log.warning("github_retry", method=method, url=url, status=status, delay=delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def graphql(self, query: str, **variables):
        # gidgethub's default endpoint is hard-coded to api.github.com; GHES and the tests need ours.
        base = self.settings.github_api_url
        endpoint = base[: -len("/api/v3")] + "/api/graphql" if base.endswith("/api/v3") else base + "/graphql"
        return await super().graphql(query, endpoint=endpoint, **variables)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[OmoiGitHubAPI]:
    """A client authenticated as the App itself (a JWT from the private key, renewed by gidgethub)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield OmoiGitHubAPI(session, settings, app_id=str(settings.github_app_id),
                            private_key=settings.private_key_pem())


@asynccontextmanager
async def installation_client(settings: Settings, installation_id: int) -> AsyncIterator[OmoiGitHubAPI]:
    """A client authenticated as one installation (token cached until shortly before expiry)."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        app_gh = OmoiGitHubAPI(session, settings)
        token = await TOKENS.get(app_gh, settings, installation_id)
        yield OmoiGitHubAPI(session, settings, installation_id=int(installation_id), oauth_token=token)
