"""What the supervisor says into a running session: the PostToolUse hook that delivers redirects.

`redirects()` returns a pending supervisor message (or None); the hook hands it to the model as
`additionalContext` with the next tool result, so the model reads it without the session stopping.
"""
from __future__ import annotations

from typing import Any

from app.observability.logs import get_logger
from app.text.rendering import render_line

log = get_logger("omoi.agent")
REDIRECT_PREFIX = "omoi-redirect:"  # how templates/prompts/redirect.j2 starts: the model and the tests find it by it


def redirect_hook(redirects: Any):
    """A PostToolUse hook that hands the model a pending supervisor message with the tool result."""

    async def hook(hook_input: Any, tool_use_id: Any, context: Any) -> dict:
        try:
            message = redirects()
        except Exception:  # noqa: BLE001 - supervision must never break the session
            log.exception("agent_redirect_failed")
            return {}
        if not message:
            return {}
        log.info("agent_redirected")
        return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": (
            render_line("prompts/redirect.j2", message=message))}}

    return hook
