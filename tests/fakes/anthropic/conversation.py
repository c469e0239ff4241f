"""Reading a Messages API request: the forced and offered tools, the tool uses and results so
far, whether it is a repair turn, and all of its text (for scripts that branch on the prompt)."""
from __future__ import annotations

import json


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
