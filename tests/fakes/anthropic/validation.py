"""The checks the real Messages API makes that a client bug would trip (extra keys are fine)."""
from __future__ import annotations

import re

from .conversation import _blocks, forced_tool


_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


class RequestValidation:
    """FakeAnthropic's request checks (answered with a 400 invalid_request_error)."""

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
