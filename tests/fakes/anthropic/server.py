"""FakeAnthropic: the aiohttp server (own thread and loop), scripting and assertions for tests,
and request dispatch (auth, validation, faults); validation, reply planning and message
building come from the mixins in validation.py, planning.py and messages.py."""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from typing import Any, Callable, Mapping

from aiohttp import web

from .._server import ThreadedServer
from .messages import MessageBuilding
from .planning import ReplyPlanning
from .replies import RecordedRequest, Reply, Responder, _Fault, _ToolRule
from .validation import RequestValidation


log = logging.getLogger("tests.fakes.anthropic")


class FakeAnthropic(RequestValidation, ReplyPlanning, MessageBuilding):
    """The Messages API stand-in on 127.0.0.1 (see the package docstring)."""

    def __init__(self, host: str = "127.0.0.1", *, api_key: str | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        #: when set, requests must carry exactly this key (x-api-key or Bearer); else any non-empty key
        self.api_key = api_key
        #: callable(request_json) -> Reply | dict (tool input for the forced tool) | str (text) | None
        self.script: Callable[[dict], Any] | None = None
        self.default_reply: Reply = Reply.text("Done.")
        self.latency_s: float = 0.0
        self.sse_chunk_chars: int = 24  # size of input_json_delta / text_delta chunks
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._tools: dict[str, _ToolRule] = {}
        self._faults: list[_Fault] = []
        self._cache: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadedServer(self._sock, self._build_app, "FakeAnthropic")

    # -- lifecycle ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def start(self) -> "FakeAnthropic":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting (test thread) -------------------------------------------------------------

    def on_tool(self, tool_name: str, responder: dict | Responder, *,
                on_repair: dict | Responder | None = None, once: bool = True) -> None:
        """Answer with a tool_use of `tool_name` whose input is `responder` (a dict, or
        callable(request_json) returning a dict or a full Reply).

        Applies when the request forces that tool, or offers it and (with once=True) the
        conversation has no tool_use of it yet. `on_repair` is used instead when the last user
        turn carries an is_error tool_result (the caller's repair retry)."""
        self._tools[tool_name] = _ToolRule(responder, on_repair, once)

    def clear_tools(self) -> None:
        self._tools.clear()

    def fail_next(self, status: int, times: int = 1, body: dict | None = None,
                  headers: Mapping[str, str] | None = None, *, message: str | None = None,
                  path: str = "/v1/messages") -> None:
        """Answer the next `times` requests to `path` with an error.

        Retryable statuses (408/409/429/5xx) get `retry-after-ms: 5` unless `headers` is given,
        so the SDK's retries stay fast; pass headers={} for the SDK's own backoff."""
        reply = Reply.error(status, message)
        if body is not None:
            reply.body = body
        if headers is None:
            headers = {"retry-after-ms": "5"} if (status in (408, 409, 429) or status >= 500) else {}
        reply.headers = dict(headers)
        with self._lock:
            self._faults.append(_Fault(reply, times, path))

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
        self._tools.clear()
        self._cache.clear()
        self.script = None
        self.requests.clear()
        self.unhandled.clear()

    # -- assertions ---------------------------------------------------------------------------

    def message_requests(self) -> list[dict]:
        """JSON bodies of every POST /v1/messages received, oldest first."""
        return [r.json for r in self.requests if r.path == "/v1/messages"]

    # -- dispatch (server thread) -------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = RecordedRequest(
            method=request.method, path=request.path, query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()}, json=body,
        )
        self.requests.append(rec)
        route = (request.method, request.path)
        if route not in {("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")}:
            log.warning("fake anthropic: unhandled %s %s", request.method, request.path_qs)
            self.unhandled.append(rec)
            return self._error(rec, Reply.error(404, f"fake: no route {request.method} {request.path}"))

        auth = self._check_auth(rec.headers)
        if auth:
            return self._error(rec, Reply.error(401, auth))
        if not isinstance(body, dict):
            return self._error(rec, Reply.error(400, "request body must be a JSON object"))
        problem = self._validate(body, count_only=request.path.endswith("count_tokens"))
        if problem:
            return self._error(rec, Reply.error(400, problem))

        if self.latency_s:
            await asyncio.sleep(self.latency_s)

        fault = self._take_fault(request.path)
        if fault is not None:
            return self._error(rec, fault)

        if request.path.endswith("count_tokens"):
            rec.status = 200
            return web.json_response({"input_tokens": self._usage(body, record=False)["input_tokens"]})

        try:
            reply = self._plan(body)
        except Exception as exc:  # a broken script is a test bug: make it loud
            log.exception("fake anthropic: script failed")
            return self._error(rec, Reply.error(500, f"fake script raised {type(exc).__name__}: {exc}"))
        if reply.status != 200:
            return self._error(rec, reply)
        rec.reply = reply
        rec.status = 200
        message = self._message(body, reply)
        if body.get("stream"):
            return await self._sse(request, message, reply.headers)
        return web.json_response(message, headers={"request-id": message["id"].replace("msg_", "req_"), **reply.headers})

    def _error(self, rec: RecordedRequest, reply: Reply) -> web.Response:
        rec.status = reply.status
        rec.reply = reply
        body = reply.body or Reply.error(reply.status).body
        return web.json_response(body, status=reply.status, headers=reply.headers)

    def _check_auth(self, headers: dict[str, str]) -> str | None:
        key = headers.get("x-api-key")
        if not key:
            authz = headers.get("authorization", "")
            if authz.lower().startswith("bearer "):
                key = authz[7:].strip()
        if not key:
            return "missing x-api-key or Authorization: Bearer header"
        if self.api_key is not None and key != self.api_key:
            return "invalid x-api-key"
        return None

    def _take_fault(self, path: str) -> Reply | None:
        with self._lock:
            for f in self._faults:
                if f.path == path:
                    f.times -= 1
                    if f.times <= 0:
                        self._faults.remove(f)
                    return f.reply
        return None
