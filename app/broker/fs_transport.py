"""kombu's filesystem transport with atomic message writes.

kombu creates the message file and then writes it, so a consumer polling the folder can
move and read a still-empty file, and the worker dies on a JSONDecodeError. Here a message
is written under a temporary name in a sibling folder and renamed into the queue folder:
a rename on one filesystem is atomic, so a consumer sees a whole message or none.
`push_task_copies` writes the web process's batches (app/broker/copies.py).
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from app.broker.copies import TaskCopies

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


class Channel(TaskCopies, filesystem.Channel):
    _staging: str | None = None

    def _staging_folder(self) -> str:
        if self._staging is None:  # once per channel, not a mkdir/stat pair per message
            staging = os.path.join(os.path.dirname(self.data_folder_out.rstrip("/")), "staging")
            os.makedirs(staging, exist_ok=True)
            self._staging = staging
        return self._staging

    def _put(self, queue, payload, **kwargs):
        self._remember(queue, payload, queue)
        self._write(queue, str_to_bytes(dumps(payload)))

    def push_task_copies(self, task: str, routing_key: str, args_list: list[list]) -> bool:
        """One `task` message file per argument list, in order; False, and nothing written, while
        there is no message to copy (app/broker/copies.py)."""
        copies = self._copies(task, routing_key, args_list)
        if copies is None:
            return False
        queue, envelopes = copies
        for envelope in envelopes:
            self._write(queue, envelope.encode("utf-8"))
        return True

    def _write(self, queue: str, data: bytes) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        tmp = None
        try:
            tmp = os.path.join(self._staging_folder(), name)
            try:
                fd = os.open(tmp, _CREATE, 0o666)  # the umask applies, as with open()
            except FileNotFoundError:  # the staging folder was removed under us: make it again
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                fd = os.open(tmp, _CREATE, 0o666)
            try:
                view = memoryview(data)
                while view:  # one write() for any message that fits a page cache write
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
