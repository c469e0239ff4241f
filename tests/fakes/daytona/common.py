"""What every part of the Daytona stand-in shares: the sandbox's fixed paths and identity, the
daemon's stream labels and timings, the recorded request, and the API's / daemon's error answer."""
from __future__ import annotations

import asyncio
import os
import posixpath
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


HOME = "/home/daytona"                  # what `get_user_home_dir()` and `get_work_dir()` report
USER = "daytona"
INSIDE_UID = 1000
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMON_DIR = f"{HOME}/.daytona"         # the daemon's config dir; session logs under sessions/
CLAUDE_INSIDE = "/usr/local/bin/claude"
STDOUT_PREFIX = b"\x01\x01\x01"         # daytona.common.process: the daemon's stream labels
STDERR_PREFIX = b"\x02\x02\x02"
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Harmless parts of the host's /etc that programs need to start (linker cache, TLS roots, alternatives).
ETC_FROM_HOST = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates",
                 "ca-certificates.conf", "localtime", "nsswitch.conf", "protocols", "services", "mime.types")
SHELLS = ("/usr/bin/zsh", "/usr/bin/bash", "/bin/sh")   # the daemon runs the first of zsh, bash, sh
LOG_POLL_S = 0.02
INPUT_PIPE_WAIT_S = 2.0


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int = 0
    query: dict[str, str] = field(default_factory=dict)


REC = web.RequestKey("rec", RecordedRequest)


def _csv(value: Any) -> list[str]:
    return [p.strip() for p in str(value).split(",") if p.strip()] if value else []


def _absolute(path: str | None, base: str = HOME) -> str:
    """A request path as an absolute inside path (relative ones against the work dir)."""
    if not path:
        return base
    if "\x00" in path:
        raise _HttpError(400, "path contains a NUL byte", "INVALID_FILE_PATH")
    return path if path.startswith("/") else posixpath.join(base, path)


def _killpg(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _error(request: web.Request, status: int, message: str, code: str | None = None, *,
           source: str | None = None) -> web.Response:
    """The daemon's / API's ErrorResponse shape (path and timestamp are required by the SDK)."""
    body: dict[str, Any] = {"statusCode": status, "message": message, "path": request.path, "method": request.method,
                            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if code:
        body["code"] = code
    body["source"] = "DAYTONA_API" if source == "api" or request.path.startswith("/api/") else "DAYTONA_DAEMON"
    return web.json_response(body, status=status)
