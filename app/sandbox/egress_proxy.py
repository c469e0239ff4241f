"""The setup steps' only way out of a local sandbox: an HTTP proxy that admits allow-listed hosts.

A repository's setup commands (`.github/omoi.yml` `setup.commands`: install dependencies, build) run
in the sandbox's jail before the agent, with `HTTP(S)_PROXY` pointing at this proxy (a unix socket
bound into the jail, joined to the jail's loopback by a forwarder). It serves `CONNECT host:port`
(HTTPS, tunnelled, never decrypted) and plain `GET http://host/...` requests, and only to hosts on
the allow-list (`pypi.org`, `*.npmjs.org`, `127.0.0.1:8123`, ...). Anything else gets 403 and is
recorded with the command that asked (`blocked`), to be shown in the run's report. When setup ends
the proxy is gone: the agent then has no network but the model proxy.
"""
from __future__ import annotations

import asyncio
import fnmatch
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

from app.observability.logs import get_logger

log = get_logger("omoi.egress_proxy")

DEFAULT_ALLOW = ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "*.npmjs.org", "registry.yarnpkg.com",
                 "proxy.golang.org", "sum.golang.org", "crates.io", "static.crates.io", "index.crates.io",
                 "rubygems.org", "repo.maven.apache.org", "deb.debian.org")
MAX_HEADER = 16 * 1024


@dataclass
class Blocked:
    host: str
    port: int
    command: str


@dataclass
class EgressProxy:
    allow: tuple[str, ...]
    command: str = ""                       # the setup command running now (for the report)
    blocked: list[Blocked] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def permits(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        for rule in self.allow:
            rule = rule.lower().strip()
            name, _, rule_port = rule.partition(":") if rule.count(":") == 1 else (rule, "", "")
            if rule_port and str(port) != rule_port:
                continue
            if fnmatch.fnmatchcase(host, name):
                return True
        return False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        line, _, rest = head.partition(b"\r\n")
        try:
            method, target, version = line.decode("latin-1").split(" ", 2)
        except ValueError:
            await self._refuse(writer, 400, "bad request")
            return
        if method.upper() == "CONNECT":
            host, _, port = target.rpartition(":")
            await self._tunnel(reader, writer, host, int(port or 443), head=None)
            return
        if not target.lower().startswith("http://"):
            await self._refuse(writer, 400, "only absolute http:// URLs and CONNECT are proxied")
            return
        authority = target[7:].split("/", 1)[0]
        path = "/" + target[7:].split("/", 1)[1] if "/" in target[7:] else "/"
        host, _, port = authority.rpartition(":") if ":" in authority else (authority, "", "80")
        request = f"{method} {path} {version}\r\n".encode("latin-1") + rest
        await self._tunnel(reader, writer, host, int(port or 80), head=request)

    async def _tunnel(self, reader, writer, host: str, port: int, head: bytes | None) -> None:
        if not self.permits(host, port):
            self.blocked.append(Blocked(host, port, self.command))
            log.warning("egress_blocked", host=host, port=port, command=self.command[:200])
            await self._refuse(writer, 403, f"omoi: {host}:{port} is not on the setup allow-list")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        except (OSError, asyncio.TimeoutError):
            await self._refuse(writer, 502, f"omoi: cannot reach {host}:{port}")
            return
        self.allowed.append(f"{host}:{port}")
        if head is None:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = message.encode()
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            dst.close()
        except Exception:  # noqa: BLE001
            pass


@asynccontextmanager
async def serve_unix(path: str, allow: tuple[str, ...], *, uid: int | None = None) -> AsyncIterator[EgressProxy]:
    """Serve the proxy on the unix socket `path` (owned by the jail's `uid`) until the block ends."""
    proxy = EgressProxy(allow=tuple(allow))
    if os.path.lexists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(proxy.handle, path=path, limit=MAX_HEADER)
    os.chmod(path, 0o600)
    if uid is not None:
        os.chown(path, uid, uid)
    try:
        yield proxy
    finally:
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 2)
        except asyncio.TimeoutError:
            pass
        try:
            os.unlink(path)
        except OSError:
            pass


__all__ = ["EgressProxy", "Blocked", "serve_unix", "DEFAULT_ALLOW"]
