"""Building the answer: rough token usage with prompt-cache accounting, the message JSON, and
its server-sent-events stream."""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from aiohttp import web

from .replies import Reply


class MessageBuilding:
    """FakeAnthropic's usage, message and SSE building."""

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
