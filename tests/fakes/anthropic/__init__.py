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

Layout: ``server.py`` (FakeAnthropic: server, scripting, dispatch), ``validation.py`` (request
checks), ``planning.py`` (which reply), ``messages.py`` (usage, message JSON, SSE),
``replies.py`` (Reply and the records), ``conversation.py`` (helpers that read a request). The
names below are re-exported so ``from tests.fakes.anthropic import ...`` keeps working.
"""
from .conversation import forced_tool, is_repair, offered_tools, request_text, tool_results, tool_uses
from .replies import ERROR_TYPES, RecordedRequest, Reply, Responder
from .server import FakeAnthropic

__all__ = [
    "ERROR_TYPES", "FakeAnthropic", "RecordedRequest", "Reply", "Responder", "forced_tool", "is_repair",
    "offered_tools", "request_text", "tool_results", "tool_uses",
]
