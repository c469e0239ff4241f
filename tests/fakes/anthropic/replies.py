"""What the Anthropic stand-in answers and records: ``Reply`` (a message or an Anthropic-shaped
error), the recorded request, queued faults and the tool rules set with ``on_tool``."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


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


Responder = Callable[[dict], Any]


@dataclass
class _ToolRule:
    responder: dict | Responder
    on_repair: dict | Responder | None
    once: bool
