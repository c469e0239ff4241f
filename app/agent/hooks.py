"""What the supervisor says into a running session: the PostToolUse hook that delivers redirects.

`redirects()` returns a pending supervisor message (or None); the hook hands it to the model as
`additionalContext` with the next tool result, so the model reads it without the session stopping.
A `Checkpoint` instead ends the session after the tool call that just finished (a paused run).
"""
from __future__ import annotations

import asyncio
from typing import Any

from app.observability.logs import get_logger
from app.text.rendering import render_line

log = get_logger("omoi.agent")
CHECKPOINT_HOLD = 30  # seconds a checkpointed session waits in its hook to be ended
REDIRECT_PREFIX = "omoi-redirect:"  # how templates/prompts/redirect.j2 starts: the model and the tests find it by it


class FromPerson(str):
    """A person's message (`/omoi tell`); `user` is who wrote it."""

    user: str = ""


class Checkpoint(str):
    """Returned by `redirects()` instead of a message: end the session after this tool call (the run was
    paused); the task runner keeps what it changed (app/execution/checkpoint.py)."""


def redirect_hook(redirects: Any):
    """A PostToolUse hook that hands the model a pending supervisor message with the tool result."""

    async def hook(hook_input: Any, tool_use_id: Any, context: Any) -> dict:
        try:
            message = redirects()
        except Exception:  # noqa: BLE001 - supervision must never break the session
            log.exception("agent_redirect_failed")
            return {}
        if isinstance(message, Checkpoint):  # (an empty string: tested before `not message`)
            log.info("agent_checkpoint")
            # Held here until the task runner ends the session (app/execution/checkpoint.py), so no
            # further model request is made; `continue: false` is the CLI's own stop, should it get here.
            await asyncio.sleep(CHECKPOINT_HOLD)
            return {"continue": False, "stopReason": render_line("prompts/checkpoint.j2")}
        if not message:
            return {}
        log.info("agent_redirected", person=isinstance(message, FromPerson))
        text = (render_line("prompts/person_message.j2", message=message, user=message.user)
                if isinstance(message, FromPerson) else render_line("prompts/redirect.j2", message=message))
        return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": text}}

    return hook
