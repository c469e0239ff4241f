"""Choosing the reply to a request: the script, then the tool rules, then the default reply."""
from __future__ import annotations

import json
from typing import Any

from .conversation import forced_tool, is_repair, offered_tools, tool_uses
from .replies import Reply, _ToolRule


class ReplyPlanning:
    """FakeAnthropic's reply resolution (see the package docstring for the order)."""

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
