"""kombu's Redis transport, made cheaper for the web process's batches of task messages.

* One Redis client object per channel instead of one per publish: kombu builds a new
  `redis.Redis` for every message it sends (and every publish batch), and redis-py's constructor
  copies its table of ~170 response callbacks each time, about as much CPU as the publish itself.
  A client holds no connection of its own (it borrows from the channel's pool per command), so
  one per channel, rebuilt when the channel's pool is, behaves the same.
* `push_task_copies`: more messages of a task Celery already sent through this channel
  (app/broker/copies.py), all in one LPUSH onto the list kombu put the first one on: no routing
  or binding involved.
"""
from __future__ import annotations

from kombu.transport import redis

from app.broker.copies import TaskCopies


class Channel(TaskCopies, redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client

    def _put(self, queue, message, **kwargs):
        if not (self._expires and queue in self._expires):  # an expiring queue needs kombu's PEXPIREs
            self._remember(queue, message, self._q_for_pri(queue, self._get_message_priority(message, reverse=False)))
        return super()._put(queue, message, **kwargs)

    def push_task_copies(self, task: str, routing_key: str, args_list: list[list]) -> bool:
        """One `task` message per argument list, in one LPUSH (in order: the first is consumed
        first); False, and nothing sent, while there is no message to copy (app/broker/copies.py)."""
        copies = self._copies(task, routing_key, args_list)
        if copies is None:
            return False
        key, envelopes = copies
        self._create_client().lpush(key, *envelopes)
        return True


class Transport(redis.Transport):
    Channel = Channel
