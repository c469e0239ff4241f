"""Serving a stand-in's aiohttp app from its own thread and event loop.

The stand-ins run in a background thread so that synchronous tests and separate OS processes
(omoi's web and worker subprocesses, the Claude Code CLI) can all reach them on loopback.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Callable

from aiohttp import web


class ThreadedServer:
    """Owns the loop, the thread and the runner of one stand-in; `build` makes its web.Application."""

    def __init__(self, sock: socket.socket, build: Callable[[], web.Application], name: str) -> None:
        self.sock, self.build, self.name = sock, build, name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.thread is not None:
            return
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                # a stand-in that stops does not wait for requests still in flight (a test ends with them)
                runner = web.AppRunner(self.build(), access_log=None, shutdown_timeout=1.0)
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, self.sock).start())
            except BaseException as exc:  # surface startup errors in start()
                error.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self.thread = threading.Thread(target=run, name=self.name, daemon=True)
        self.thread.start()
        ready.wait(10)
        if error:
            raise error[0]

    def stop(self) -> None:
        if self.thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.thread = None
        try:
            self.sock.close()
        except OSError:
            pass
