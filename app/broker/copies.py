"""Copies of a task message: what the web process's batches send after the first (app/jobs.py).

Celery and kombu spend ~100 us of Python on every message they build (options, routing,
serialising the body and then the envelope). Every `omoi.process_delivery` message of a web
process is the same but for its task id, delivery tag and argument, so a transport channel
(app/broker/redis_transport.py, app/broker/fs_transport.py) remembers the envelope kombu put on
a queue for the first plain message of a task, and renders later ones from it: the same JSON,
as kombu serialises it, with their own values, at a tenth of the cost. A consumer cannot tell a
copy from a message Celery built (tests/integration/test_broker_batches.py).
"""
from __future__ import annotations

import base64
import os
import re
import uuid

from kombu.utils.json import dumps, loads


class TaskCopies:
    """Mixin for a kombu virtual channel: `_remember(queue, message, target)` from its `_put`, and
    `_copies(task, routing_key, args_list)`: (target, envelopes) or None."""

    _task_templates: dict | None = None

    def _remember(self, queue: str, message: dict, target) -> None:
        headers = message.get("headers")
        task = headers.get("task") if isinstance(headers, dict) else None
        if not isinstance(task, str):
            return
        # by task and routing key: Celery applications on one broker share pooled channels
        info = (message.get("properties") or {}).get("delivery_info") or {}
        name = (task, info.get("routing_key"))
        if self._task_templates is None or name not in self._task_templates:
            template = _template(message, target)
            if template is not None:
                if self._task_templates is None:
                    self._task_templates = {}
                self._task_templates[name] = template

    def _copies(self, task: str, routing_key: str, args_list: list[list]) -> tuple | None:
        """Where to put them and the envelopes (JSON text), one per argument list, in order; None
        while no plain message of `task` went through this channel to `routing_key`."""
        template = (self._task_templates or {}).get((task, routing_key))
        if template is None:
            return None
        target, parts, kwargs, embed = template
        ids = _uuid4s(2 * len(args_list))
        out = []
        for i, args in enumerate(args_list):
            values = {
                "id": f'"{ids[2 * i]}"',
                "tag": f'"{ids[2 * i + 1]}"',
                "body": '"' + base64.b64encode(dumps([args, kwargs, embed]).encode("utf-8")).decode("ascii") + '"',
                "argsrepr": dumps(repr(args)),
            }
            out.append("".join(values[p] if j % 2 else p for j, p in enumerate(parts)))
        return target, out


def _uuid4s(n: int) -> list[str]:
    """`n` random (version 4) UUIDs as text, from one read of the OS's random source."""
    raw = bytearray(os.urandom(16 * n))
    out = []
    for i in range(0, 16 * n, 16):
        raw[i + 6] = raw[i + 6] & 0x0F | 0x40
        raw[i + 8] = raw[i + 8] & 0x3F | 0x80
        h = raw[i:i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def _template(message: dict, target) -> tuple | None:
    """(target, envelope text in parts, task kwargs, embed) of a plain task message: one sent from
    outside a task (its own root), without ETA, expiry or group; anything else is never copied.
    The parts are the envelope's JSON (as kombu serialises it) split around its per-message
    values, odd parts naming the value that goes there."""
    headers, props = message["headers"], message.get("properties") or {}
    task_id = headers.get("id")
    if (not isinstance(task_id, str) or headers.get("root_id") != task_id or props.get("correlation_id") != task_id
            or any(headers.get(k) is not None for k in ("parent_id", "eta", "expires", "group", "shadow"))
            or props.get("body_encoding") != "base64" or message.get("content-type") != "application/json"):
        return None
    try:
        body = loads(base64.b64decode(message["body"]))
    except (ValueError, TypeError):
        return None
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[1], dict) and isinstance(body[2], dict)):
        return None
    marker = uuid.uuid4().hex  # a token no other value of the message can contain
    env = dict(message, body=f"{marker}:body")
    env["headers"] = dict(headers, id=f"{marker}:id", root_id=f"{marker}:id", argsrepr=f"{marker}:argsrepr")
    env["properties"] = dict(props, correlation_id=f"{marker}:id", delivery_tag=f"{marker}:tag")
    parts = re.split(f'"{marker}:(id|tag|body|argsrepr)"', dumps(env))
    return target, parts, body[1], body[2]
