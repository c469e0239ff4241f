"""The model proxy: the only way a sandboxed agent reaches the model, and no credential inside.

A sandbox gets a per-session capability token (as its `ANTHROPIC_API_KEY`) and the proxy's
address; the proxy
- answers only the Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) and
  refuses everything else with 404, a missing or wrong token with 401 (constant-time compare);
- refuses a request once the session's dollar budget or token allowance is used up (400, an
  Anthropic-style `invalid_request_error`, which Claude Code does not retry), clamps `max_tokens`;
- adds the real API key and forwards to `settings.anthropic_base_url` (or api.anthropic.com),
  streaming the answer back unchanged while it reads the usage out of it;
- records each call's usage and cost on the session (`ProxySession.cost_usd`, `.calls`;
  the sessions themselves are app/agent/proxy_sessions.py).

Locally one proxy serves one agent session on a unix socket bound into the sandbox
(`serve_unix`); the sandbox has no network but loopback, where a forwarder joins the two.
A remote sandbox (Daytona) reaches the web process's proxy at `<public URL>/model-proxy` (`add_routes`);
its sessions live in the database (`DatabaseSessions`: `open_db_session` in the worker, the token's
hash in `model_sessions`), so any web process serves any worker's session.
"""
from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from app.agent.proxy_sessions import (
    DatabaseSessions,
    MemorySessions,
    ProxySession,
    close_db_session,
    open_db_session,
)
from app.observability.logs import get_logger

log = get_logger("omoi.model_proxy")

DEFAULT_UPSTREAM = "https://api.anthropic.com"
ALLOWED_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
MAX_BODY_BYTES = 32 << 20
# Request headers passed upstream; everything else (auth, cookies, hop-by-hop) is dropped.
FORWARD_HEADERS = ("anthropic-version", "anthropic-beta", "content-type", "accept", "user-agent", "x-app",
                   "x-claude-code-session-id", "anthropic-dangerous-direct-browser-access")
RESPONSE_HEADERS = ("content-type", "request-id", "anthropic-organization-id", "retry-after")


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response({"type": "error", "error": {"type": kind, "message": f"omoi model proxy: {message}"}},
                             status=status)


def _presented_token(request: web.Request) -> str:
    key = request.headers.get("x-api-key", "")
    if not key:
        authz = request.headers.get("authorization", "")
        if authz.lower().startswith("bearer "):
            key = authz[7:].strip()
    return key


class ModelProxy:
    """An aiohttp app forwarding one or more sessions' Messages API calls (see module docstring)."""

    def __init__(self, settings: Any, store: Any = None) -> None:
        key = getattr(settings, "anthropic_api_key", None)
        self._api_key = (key.get_secret_value() if hasattr(key, "get_secret_value") else key) or ""
        self._upstream = (getattr(settings, "anthropic_base_url", "") or DEFAULT_UPSTREAM).rstrip("/")
        self.store = store or MemorySessions()
        self._client: aiohttp.ClientSession | None = None

    def open_session(self, **limits: Any) -> ProxySession:
        session = ProxySession(**limits)
        self.store.sessions[session.token] = session
        return session

    async def _session_for(self, request: web.Request) -> ProxySession | None:
        presented = _presented_token(request)
        return await self.store.find(presented) if presented else None

    def app(self) -> web.Application:
        application = web.Application(client_max_size=MAX_BODY_BYTES)
        application.router.add_route("*", "/{tail:.*}", self._handle)
        return application

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info.get("tail", "")
        if request.method != "POST" or path not in ALLOWED_PATHS:
            log.warning("model_proxy_refused", method=request.method, path=path[:200], reason="not the Messages API")
            return _error(404, "only POST /v1/messages is served here", "not_found_error")
        session = await self._session_for(request)
        if session is None:
            log.warning("model_proxy_refused", path=request.path, reason="bad session token")
            return _error(401, "invalid session token", "authentication_error")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body is not a JSON object")
        counting = path.endswith("count_tokens")
        if not counting:
            why = session.exhausted()
            if why:
                session.refused.append(why)
                log.warning("model_proxy_refused", reason=why.to_json())
                return _error(400, str(why))
            cap = session.max_tokens_per_request
            if cap and isinstance(body.get("max_tokens"), int) and body["max_tokens"] > cap:
                body["max_tokens"] = cap
                thinking = body.get("thinking")
                if isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
                    thinking["budget_tokens"] = min(thinking["budget_tokens"], max(1024, cap - 1))
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_HEADERS}
        headers["x-api-key"] = self._api_key
        url = self._upstream + path + (f"?{request.query_string}" if request.query_string else "")
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=900,
                                                                                sock_connect=30))
        try:
            upstream = await self._client.post(url, data=json.dumps(body).encode(), headers=headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("model_proxy_upstream_failed", error=type(exc).__name__)
            return _error(502, "the model API could not be reached", "api_error")
        async with upstream:
            return await self._relay(request, upstream, session, body, counting)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse, session: ProxySession,
                     body: dict, counting: bool) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers={
            k: v for k, v in upstream.headers.items() if k.lower() in RESPONSE_HEADERS})
        await response.prepare(request)
        meter = _UsageReader(str(body.get("model") or ""))
        streaming = "text/event-stream" in upstream.headers.get("content-type", "")
        raw = bytearray()
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
            if streaming:
                meter.feed(chunk)
            elif len(raw) < MAX_BODY_BYTES:
                raw += chunk
        await response.write_eof()
        if upstream.status == 200 and not counting:
            if not streaming:
                meter.from_json(bytes(raw))
            session.calls += 1
            await self.store.record(session, meter.model, meter.usage)
        return response

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


class _UsageReader:
    """Reads `usage` out of a Messages response, streamed (SSE) or whole."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict[str, int] = {}
        self._buf = b""

    def _take(self, usage: Any) -> None:
        if isinstance(usage, dict):
            for k, v in usage.items():
                if isinstance(v, int):
                    self.usage[k] = v  # message_delta carries cumulative counts

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if not line.startswith(b"data:"):
                continue
            try:
                event = json.loads(line[5:].strip() or b"null")
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
                self.model = str(event["message"].get("model") or self.model)
                self._take(event["message"].get("usage"))
            elif event.get("type") == "message_delta":
                self._take(event.get("usage"))

    def from_json(self, raw: bytes) -> None:
        try:
            data = json.loads(raw or b"null")
        except ValueError:
            return
        if isinstance(data, dict):
            self.model = str(data.get("model") or self.model)
            self._take(data.get("usage"))


PREFIX = "/model-proxy"


def add_routes(app: web.Application, settings: Any) -> None:
    """Serve `<public URL>/model-proxy/v1/messages` for remote sandboxes (sessions in the database)."""
    proxy = ModelProxy(settings, DatabaseSessions(settings.database_url))
    app.router.add_route("*", PREFIX + "/{tail:.*}", proxy._handle)

    async def lifetime(_app: web.Application):
        yield
        await proxy.close()

    app.cleanup_ctx.append(lifetime)


@asynccontextmanager
async def _one_session(settings: Any, limits: dict) -> AsyncIterator[tuple[ProxySession, web.AppRunner]]:
    """A proxy serving one in-memory session; when the block ends, a call still in flight is aborted."""
    proxy = ModelProxy(settings)
    session = proxy.open_session(**limits)
    runner = web.AppRunner(proxy.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        yield session, runner
    finally:
        await proxy.close()
        await runner.cleanup()


@asynccontextmanager
async def serve_unix(settings: Any, path: str, *, uid: int | None = None, **limits: Any) -> AsyncIterator[ProxySession]:
    """Serve one session on the unix socket `path` (owned by `uid`, mode 0600) until the block ends."""
    async with _one_session(settings, limits) as (session, runner):
        try:
            if os.path.lexists(path):
                os.unlink(path)
            await web.UnixSite(runner, path).start()
            os.chmod(path, 0o600)
            if uid is not None:
                os.chown(path, uid, uid)
            yield session
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass


@asynccontextmanager
async def remote_session(settings: Any, *, label: str, max_usd: float | None = None,
                         max_tokens_total: int | None = None,
                         max_tokens_per_request: int | None = None) -> AsyncIterator[ProxySession]:
    """A database session for a remote sandbox's agent, closed (its token refused) when the block ends.
    The yielded object's `cost_usd`/`refused` are filled in from the database at the end."""
    ttl = float(getattr(settings, "agent_timeout_seconds", 1800)) + 600
    token, row_id = await asyncio.to_thread(
        open_db_session, settings.database_url, label=label, ttl_s=ttl, max_usd=max_usd,
        max_tokens_total=max_tokens_total, max_tokens_per_request=max_tokens_per_request)
    session = ProxySession(max_usd=max_usd, max_tokens_total=max_tokens_total,
                           max_tokens_per_request=max_tokens_per_request, token=token, row_id=row_id)
    try:
        yield session
    finally:
        used = await asyncio.to_thread(close_db_session, settings.database_url, row_id)
        session.cost_usd = float(used.get("cost_usd") or 0)
        session.calls = int(used.get("calls") or 0)
        why = session.exhausted()
        if why:
            session.refused.append(why)


@asynccontextmanager
async def serve_tcp(settings: Any, **limits: Any) -> AsyncIterator[tuple[ProxySession, str]]:
    """Serve one session on 127.0.0.1 (an unconfined sandbox, which shares the host's network)."""
    async with _one_session(settings, limits) as (session, runner):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield session, f"http://127.0.0.1:{port}"


__all__ = ["ModelProxy", "ProxySession", "serve_unix", "serve_tcp", "remote_session", "add_routes", "open_db_session",
           "close_db_session"]
