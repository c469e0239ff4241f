"""A local stand-in for the Anthropic Messages API.

It runs an aiohttp server in a background thread (own event loop) on 127.0.0.1 and a random
port, so in-process code, Celery workers in other OS processes and the Claude Code CLI can all
point ANTHROPIC_BASE_URL at `fake.url`.

Replies are chosen from the request *content*, never from a call counter (the CLI sometimes
retries a turn, and concurrent workers interleave). Resolution order for `POST /v1/messages`:

1. a queued one-shot fault (`fail_next`);
2. `fake.script(request_json)` if set, when it returns something other than None;
3. a tool responder (`on_tool`): the forced tool (`tool_choice={"type":"tool","name":...}`) if
   registered, else the first registered tool the request offers that has not been used yet in
   this conversation (so an agent loop ends after the tool_result comes back);
4. `fake.default_reply` (an `end_turn` text message).

Example::

    with FakeAnthropic() as fake:
        fake.on_tool("emit_plan", {"title": "x", "steps": []})
        fake.fail_next(529)                      # the next request gets overloaded_error
        ...
        assert fake.message_requests()[-1]["tool_choice"]["name"] == "emit_plan"
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from aiohttp import web

from ._server import ThreadedServer

log = logging.getLogger("tests.fakes.anthropic")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    529: "overloaded_error",
}
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


# --------------------------------------------------------------------------------------------
# replies


@dataclass
class Reply:
    """What the fake answers. `content` holds Anthropic content blocks:
    {"type": "text", "text": ...} or {"type": "tool_use", "name": ..., "input": {...}} (id optional).
    A non-200 `status` turns it into an error reply with an Anthropic-shaped body."""

    content: list[dict] = field(default_factory=list)
    stop_reason: str | None = None  # inferred: "tool_use" if a tool_use block is present, else "end_turn"
    status: int = 200
    body: dict | None = None  # error body override
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict | None = None  # override computed usage (merged)
    model: str | None = None  # defaults to the requested model

    @classmethod
    def text(cls, text: str, **kw: Any) -> "Reply":
        return cls(content=[{"type": "text", "text": text}], **kw)

    @classmethod
    def tool(cls, name: str, input: dict, *, text: str | None = None, **kw: Any) -> "Reply":
        blocks: list[dict] = [{"type": "text", "text": text}] if text else []
        blocks.append({"type": "tool_use", "name": name, "input": input})
        return cls(content=blocks, **kw)

    @classmethod
    def error(cls, status: int, message: str | None = None, *, error_type: str | None = None,
              headers: Mapping[str, str] | None = None) -> "Reply":
        etype = error_type or ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": etype, "message": message or f"fake {etype}"},
                "request_id": f"req_fake_{uuid.uuid4().hex[:16]}"}
        return cls(status=status, body=body, headers=dict(headers or {}))


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case keys
    json: Any
    status: int = 0  # what the fake answered
    reply: Reply | None = None


@dataclass
class _Fault:
    reply: Reply
    times: int
    path: str


def forced_tool(request_json: dict) -> str | None:
    choice = request_json.get("tool_choice") or {}
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return choice.get("name")
    return None


def offered_tools(request_json: dict) -> list[str]:
    return [t.get("name") for t in request_json.get("tools") or [] if isinstance(t, dict)]


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def tool_uses(request_json: dict, name: str | None = None) -> list[dict]:
    """Every tool_use the assistant already made in this conversation."""
    out = []
    for m in request_json.get("messages") or []:
        if m.get("role") == "assistant":
            out += [b for b in _blocks(m) if b.get("type") == "tool_use" and (name is None or b.get("name") == name)]
    return out


def tool_results(request_json: dict) -> list[dict]:
    out = []
    for m in request_json.get("messages") or []:
        if m.get("role") == "user":
            out += [b for b in _blocks(m) if b.get("type") == "tool_result"]
    return out


def is_repair(request_json: dict) -> bool:
    """True when the last user turn reports a failed tool call (is_error tool_result)."""
    msgs = [m for m in request_json.get("messages") or [] if m.get("role") == "user"]
    return bool(msgs) and any(b.get("type") == "tool_result" and b.get("is_error") for b in _blocks(msgs[-1]))


def request_text(request_json: dict) -> str:
    """All text of system and messages, for scripts that branch on the prompt."""
    parts = []
    system = request_json.get("system")
    if isinstance(system, str):
        parts.append(system)
    elif isinstance(system, list):
        parts += [b.get("text", "") for b in system if isinstance(b, dict)]
    for m in request_json.get("messages") or []:
        for b in _blocks(m):
            if b.get("type") == "text":
                parts.append(b.get("text", ""))
            elif b.get("type") == "tool_result":
                c = b.get("content")
                parts.append(c if isinstance(c, str) else json.dumps(c))
    return "\n".join(parts)


Responder = Callable[[dict], Any]


@dataclass
class _ToolRule:
    responder: dict | Responder
    on_repair: dict | Responder | None
    once: bool


# --------------------------------------------------------------------------------------------
# the server


class FakeAnthropic:
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

    @staticmethod
    def _validate(body: dict, count_only: bool = False) -> str | None:
        """The checks the real API makes that a client bug would trip (extra keys are fine)."""
        if not body.get("model"):
            return "model: field required"
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return "messages: field required"
        if not count_only and not isinstance(body.get("max_tokens"), int):
            return "max_tokens: field required"
        tools = body.get("tools") or []
        names = []
        for i, t in enumerate(tools):
            if not isinstance(t, dict) or not t.get("name"):
                return f"tools.{i}.name: field required"
            names.append(t["name"])
            if t.get("type") in (None, "custom"):
                if not _TOOL_NAME_RE.match(t["name"]):
                    return f"tools.{i}.name: String should match pattern '{_TOOL_NAME_RE.pattern}'"
                schema = t.get("input_schema")
                if not isinstance(schema, dict) or schema.get("type") != "object":
                    return f"tools.{i}.input_schema: type must be 'object'"
        forced = forced_tool(body)
        if forced is not None and forced not in names:
            return f"tool_choice: tool '{forced}' not found in tools"
        # Every tool_use must be answered by a tool_result in the next user turn, and every
        # tool_result must answer a tool_use of the previous assistant turn. `system` turns (sent
        # by the Claude Code CLI) are skipped.
        turns = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") != "system"]
        for i, m in enumerate(turns):
            if m.get("role") not in ("user", "assistant"):
                return f"messages.{i}.role: unexpected role {m.get('role')!r}"
            if m.get("role") != "user":
                continue
            results = {b.get("tool_use_id") for b in _blocks(m) if b.get("type") == "tool_result"}
            prev = turns[i - 1] if i > 0 else None
            uses = set()
            if prev is not None and prev.get("role") == "assistant":
                uses = {b.get("id") for b in _blocks(prev) if b.get("type") == "tool_use"}
            if results - uses:
                return f"messages.{i}: tool_result without a matching tool_use in the previous message"
            if uses - results:
                return f"messages.{i}: tool_use ids were found without tool_result blocks immediately after"
        return None

    # -- planning -------------------------------------------------------------------------------

    def _plan(self, body: dict) -> Reply:
        if self.script is not None:
            out = self.script(body)
            if out is not None:
                return self._coerce(out, body, forced_tool(body))
        forced = forced_tool(body)
        if forced is not None and forced in self._tools:
            return self._from_rule(forced, self._tools[forced], body)
        offered = offered_tools(body)
        for name, rule in self._tools.items():
            if name in offered and (not rule.once or not tool_uses(body, name)):
                if forced is None or forced == name:
                    return self._from_rule(name, rule, body)
        return self.default_reply

    def _from_rule(self, name: str, rule: _ToolRule, body: dict) -> Reply:
        responder = rule.on_repair if (rule.on_repair is not None and is_repair(body)) else rule.responder
        out = responder(body) if callable(responder) else responder
        return self._coerce(out, body, name)

    @staticmethod
    def _coerce(out: Any, body: dict, tool: str | None) -> Reply:
        if isinstance(out, Reply):
            return out
        if isinstance(out, str):
            return Reply.text(out)
        if isinstance(out, dict):
            if tool is None:
                raise ValueError("a dict reply needs a forced tool to answer with")
            return Reply.tool(tool, json.loads(json.dumps(out)))
        raise TypeError(f"script returned {type(out).__name__}; want Reply, dict, str or None")

    # -- usage ----------------------------------------------------------------------------------

    @staticmethod
    def _tokens(text: str) -> int:
        return max(1, len(text) // 4)

    def _usage(self, body: dict, *, record: bool = True) -> dict:
        """Rough token counts; cache accounting by prefix hash at each cache_control breakpoint
        (order tools -> system -> messages, as the real API builds the prefix)."""
        segments: list[tuple[str, bool]] = []

        def add(block: Any) -> None:
            if isinstance(block, dict):
                cached = "cache_control" in block
                clean = {k: v for k, v in block.items() if k != "cache_control"}
                segments.append((json.dumps(clean, sort_keys=True), cached))
            else:
                segments.append((json.dumps(block), False))

        for t in body.get("tools") or []:
            add(t)
        system = body.get("system")
        if isinstance(system, list):
            for b in system:
                add(b)
        elif system:
            add(system)
        for m in body.get("messages") or []:
            segments.append((f"<{m.get('role')}>", False))
            content = m.get("content")
            if isinstance(content, list):
                for b in content:
                    add(b)
            else:
                add(content)

        total = sum(len(s) for s, _ in segments) // 4 + 1
        prefix_hash = hashlib.sha256(str(body.get("model")).encode())
        chars = 0
        breakpoints: list[tuple[str, int]] = []
        for text, cached in segments:
            prefix_hash.update(text.encode())
            chars += len(text)
            if cached:
                breakpoints.append((prefix_hash.hexdigest(), chars // 4))
        read = creation = 0
        if breakpoints:
            with self._lock:
                for h, toks in reversed(breakpoints):
                    if h in self._cache:
                        read = toks
                        break
                creation = max(0, breakpoints[-1][1] - read)
                if record:
                    self._cache.update(h for h, _ in breakpoints)
            if not record:
                read, creation = 0, 0
        return {
            "input_tokens": max(1, total - read - creation),
            "cache_creation_input_tokens": creation,
            "cache_read_input_tokens": read,
        }

    def _message(self, body: dict, reply: Reply) -> dict:
        content = []
        for block in reply.content:
            block = dict(block)
            if block.get("type") == "tool_use":
                block.setdefault("id", f"toolu_fake_{uuid.uuid4().hex[:20]}")
            content.append(block)
        stop = reply.stop_reason or ("tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn")
        usage = self._usage(body)
        usage["output_tokens"] = self._tokens(json.dumps(content))
        if reply.usage:
            usage.update(reply.usage)
        return {
            "id": f"msg_fake_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    # -- SSE ------------------------------------------------------------------------------------

    def _chunks(self, text: str) -> list[str]:
        n = max(1, self.sse_chunk_chars)
        return [text[i:i + n] for i in range(0, len(text), n)] or [""]

    async def _sse(self, request: web.Request, message: dict, headers: dict) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "request-id": message["id"].replace("msg_", "req_"), **headers,
        })
        await resp.prepare(request)

        async def send(event: str, data: dict) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}
        await send("message_start", {"type": "message_start", "message": start})
        await send("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block.get("type") == "tool_use":
                head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await send("content_block_start", {"type": "content_block_start", "index": index, "content_block": head})
                for piece in self._chunks(json.dumps(block.get("input", {}))):
                    await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta", "partial_json": piece}})
            elif block.get("type") == "text":
                await send("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}})
                for piece in self._chunks(block.get("text", "")):
                    await send("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": piece}})
            else:  # thinking etc.: send whole
                await send("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            await send("content_block_stop", {"type": "content_block_stop", "index": index})
        await send("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                     "usage": {"output_tokens": usage["output_tokens"]}})
        await send("message_stop", {"type": "message_stop"})
        await resp.write_eof()
        return resp
