"""A session's messages as omoi keeps them, and what they cost so far.

`simplify` turns each Agent SDK message into small dicts (text, tool calls and results, the result),
redacted and clipped to a few KB: the transcript the task row keeps for the guardian and the run's
report. `CostMeter` adds up the session's cost from the assistant messages' usage, so a session
stopped before its result message is still paid for.
"""
from __future__ import annotations

import json
from typing import Any

from app.llm.pricing import Usage, cost_usd
from app.observability.logs import redact
from app.text.rendering import render_line

MAX_TRANSCRIPT_CHARS = 4000


def clip(text: Any, limit: int = MAX_TRANSCRIPT_CHARS) -> str:
    if not isinstance(text, str):
        try:
            text = json.dumps(text, default=str)
        except (TypeError, ValueError):
            text = str(text)
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + render_line("prompts/clipped.j2", count=len(text) - limit)


def simplify(message: Any) -> list[dict]:
    from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage, UserMessage
    from claude_agent_sdk.types import TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock

    out: list[dict] = []
    if isinstance(message, AssistantMessage):
        for block in message.content:
            if isinstance(block, TextBlock):
                out.append({"role": "assistant", "type": "text", "text": clip(block.text)})
            elif isinstance(block, ToolUseBlock):
                out.append({"role": "assistant", "type": "tool_use", "id": block.id, "name": block.name,
                            "input": clip(block.input)})
            elif isinstance(block, ThinkingBlock):
                out.append({"role": "assistant", "type": "thinking", "text": clip(block.thinking, 1000)})
        if message.error:
            out.append({"role": "assistant", "type": "error", "error": str(message.error)})
    elif isinstance(message, UserMessage):
        content = message.content
        if isinstance(content, str):
            out.append({"role": "user", "type": "text", "text": clip(content)})
        else:
            for block in content:
                if isinstance(block, ToolResultBlock):
                    out.append({"role": "user", "type": "tool_result", "tool_use_id": block.tool_use_id,
                                "is_error": bool(block.is_error), "content": clip(block.content)})
                elif isinstance(block, TextBlock):
                    out.append({"role": "user", "type": "text", "text": clip(block.text)})
    elif isinstance(message, SystemMessage):
        out.append({"role": "system", "type": message.subtype})
    elif isinstance(message, ResultMessage):
        out.append({"role": "result", "type": message.subtype, "is_error": message.is_error,
                    "num_turns": message.num_turns, "cost_usd": message.total_cost_usd,
                    "result": clip(message.result or "")})
    return out


class CostMeter:
    """The session's cost so far from the assistant messages' usage (one API response can arrive as
    several messages sharing a message id and its usage: counted once)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._seen: set[str] = set()

    def add(self, message: Any) -> bool:
        usage, mid = getattr(message, "usage", None), getattr(message, "message_id", None)
        if not usage or (mid and mid in self._seen):
            return False
        if mid:
            self._seen.add(mid)
        self.total += float(cost_usd(getattr(message, "model", "") or "", Usage.of(usage)))
        return True
