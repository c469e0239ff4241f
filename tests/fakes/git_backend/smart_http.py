"""Smart HTTP: ``git http-backend`` run once per request as a CGI program, its answer parsed, and
the ref updates of a receive-pack request read from its pkt-lines."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from .plumbing import isolated_env


HTTP_BACKEND_TIMEOUT = 120.0


def parse_receive_pack_commands(body: bytes) -> list[tuple[str, str, str]]:
    """The ``(old, new, ref)`` update commands at the start of a receive-pack request (pkt-lines)."""
    cmds = []
    pos = 0
    while pos + 4 <= len(body):
        try:
            n = int(body[pos : pos + 4], 16)
        except ValueError:
            break
        if n == 0:  # flush-pkt ends the command list
            break
        if n < 4:
            break
        line = body[pos + 4 : pos + n].split(b"\0", 1)[0].strip().decode("utf-8", "replace")
        pos += n
        parts = line.split(" ")
        if len(parts) == 3 and all(re.fullmatch(r"[0-9a-f]{40}", p) for p in parts[:2]):
            cmds.append((parts[0], parts[1], parts[2]))
    return cmds


@dataclass
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


async def run_http_backend(*, project_root: Path, home: Path, path_info: str, method: str, query: str,
                           content_type: str, body: bytes, remote_user: str,
                           http_headers: dict[str, str]) -> CgiResponse:
    """Run ``git http-backend`` once as a CGI program and parse its answer."""
    env = isolated_env(home, {
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": path_info,
        "REQUEST_METHOD": method,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": remote_user,
        "REMOTE_ADDR": "127.0.0.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in http_headers.items()},
    })
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(project_root),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(body), HTTP_BACKEND_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return CgiResponse(504, [("Content-Type", "text/plain")], b"git http-backend timed out\n")
    return parse_cgi_output(out, err)


def parse_cgi_output(out: bytes, err: bytes = b"") -> CgiResponse:
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = out.partition(b"\n\n")
    if not sep:
        return CgiResponse(500, [("Content-Type", "text/plain")], b"bad CGI output from git http-backend\n" + err)
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name, value))
    return CgiResponse(status, headers, body)
