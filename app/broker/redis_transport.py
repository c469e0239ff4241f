"""kombu's Redis transport, made cheaper for the web process's batches of task messages.

* One Redis client object per channel instead of one per publish: kombu builds a new
  `redis.Redis` for every message it sends (and every publish batch), and redis-py's constructor
  copies its table of ~170 response callbacks each time, about as much CPU as the publish itself.
  A client holds no connection of its own (it borrows from the channel's pool per command), so
  one per channel, rebuilt when the channel's pool is, behaves the same.
* `push_task_copies`: more messages of a task Celery already sent through this channel, each
  the envelope kombu put on the queue for it (app/jobs.py's batches) with its own task id,
  delivery tag and arguments, all in one LPUSH. Celery and kombu spend ~100 us of Python on each
  message (options, routing, serialising twice); a copy costs a tenth of that. The queue's key is
  the one kombu routed the first message to, so no routing or binding is involved.
"""
from __future__ import annotations

import base64
import os
import re
import uuid

from kombu.transport import redis
from kombu.utils.json import dumps, loads


class Channel(redis.Channel):
    _sync_client = None
    _task_templates: dict | None = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client

    def _put(self, queue, message, **kwargs):
        headers = message.get("headers")
        task = headers.get("task") if isinstance(headers, dict) else None
        if isinstance(task, str):
            # by task and routing key: Celery applications on one broker share pooled channels
            info = (message.get("properties") or {}).get("delivery_info") or {}
            name = (task, info.get("routing_key"))
            if self._task_templates is None or name not in self._task_templates:
                template = _template(self, queue, message)
                if template is not None:
                    if self._task_templates is None:
                        self._task_templates = {}
                    self._task_templates[name] = template
        return super()._put(queue, message, **kwargs)

    def push_task_copies(self, task: str, routing_key: str, args_list: list[list]) -> bool:
        """One `task` message per argument list, copied from the one Celery sent through this
        channel with `routing_key`, pushed in one LPUSH (in order: the first is consumed first);
        False, and nothing sent, while there is no such message to copy."""
        template = (self._task_templates or {}).get((task, routing_key))
        if template is None:
            return False
        key, parts, kwargs, embed = template
        ids = _uuid4s(2 * len(args_list))
        encoded = []
        for i, args in enumerate(args_list):
            values = {
                "id": f'"{ids[2 * i]}"',
                "tag": f'"{ids[2 * i + 1]}"',
                "body": '"' + base64.b64encode(dumps([args, kwargs, embed]).encode("utf-8")).decode("ascii") + '"',
                "argsrepr": dumps(repr(args)),
            }
            encoded.append("".join(values[p] if j % 2 else p for j, p in enumerate(parts)))
        self._create_client().lpush(key, *encoded)
        return True


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


def _template(channel: Channel, queue: str, message: dict) -> tuple | None:
    """(queue key, envelope text in parts, task kwargs, embed) of a plain task message kombu is
    putting on `queue`: one sent from outside a task (its own root), without ETA, expiry, group
    or expiring queue; anything else is never copied. The parts are the envelope's JSON (as kombu
    serialises it) split around its per-message values, odd parts naming the value to put there."""
    headers, props = message["headers"], message.get("properties") or {}
    task_id = headers.get("id")
    if (not isinstance(task_id, str) or headers.get("root_id") != task_id or props.get("correlation_id") != task_id
            or any(headers.get(k) is not None for k in ("parent_id", "eta", "expires", "group", "shadow"))
            or props.get("body_encoding") != "base64" or message.get("content-type") != "application/json"
            or (channel._expires and queue in channel._expires)):
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
    key = channel._q_for_pri(queue, channel._get_message_priority(message, reverse=False))
    return key, parts, body[1], body[2]


class Transport(redis.Transport):
    Channel = Channel
