"""A local stand-in for the Daytona control plane and the in-sandbox toolbox daemon.

Same shape as tests/fakes/anthropic.py: an aiohttp server in a background thread (own event
loop) on 127.0.0.1 and a random port. Point the `daytona` SDK at `fake.api_url`
(`http://127.0.0.1:PORT/api`); every sandbox DTO carries `toolboxProxyUrl =
http://127.0.0.1:PORT/toolbox`, so the SDK's toolbox calls (`<toolboxProxyUrl>/<id>/<path>`)
come back here too.

Each sandbox is a temp dir on the host; its work dir (`get_work_dir()`) is `<root>/<id>/workspace`
and commands run there with `sh -c` (no isolation: this fakes the API, not the isolation).
Relative paths in requests resolve against the work dir, absolute ones are used as given.

Implemented (what daytona 0.226.1's AsyncDaytona / AsyncSandbox call):

- control plane: `POST /api/sandbox`, `GET /api/sandbox`, `GET|DELETE /api/sandbox/{id}`,
  `GET /api/sandbox/{id}/toolbox-proxy-url`;
- toolbox: `POST /process/execute` (combined stdout+stderr in `result`, like the daemon),
  `POST /files/bulk-upload` (multipart `files[i].path` + `files[i].file`),
  `POST /files/bulk-download` (multipart response, one `file` or `error` part per path),
  `GET /work-dir`, `GET /user-home-dir`, `POST /git/clone` (a real `git clone`; URLs listed in
  `fake.repo_map` are cloned from the local path they map to).

Anything else is answered 404 and recorded in `fake.unhandled`. `fake.sandboxes[id]` is a
`FakeSandbox` with the create request (`create_params`), `deleted`, and the dirs.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ._server import ThreadedServer

log = logging.getLogger("tests.fakes.daytona")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int = 0


class _NotFound(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


REC = web.RequestKey("rec", RecordedRequest)


@dataclass
class FakeSandbox:
    id: str
    root: Path
    create_params: dict
    state: str = "started"
    deleted: bool = False
    created_at: str = ""
    execs: list[dict] = field(default_factory=list)
    clones: list[dict] = field(default_factory=list)

    @property
    def workdir(self) -> Path:
        return self.root / "workspace"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def network_block_all(self) -> bool:
        return bool(self.create_params.get("networkBlockAll"))


class FakeDaytona:
    def __init__(self, *, api_key: str | None = None, root: str | Path | None = None) -> None:
        self.api_key = api_key  # None: accept any bearer token
        self._tmp = None if root else tempfile.mkdtemp(prefix="fake-daytona-")
        self.root = Path(root or self._tmp)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.toolbox_url = f"{self.url}/toolbox"
        self.sandboxes: dict[str, FakeSandbox] = {}
        # Remote URL -> local repo path, for `git/clone` of URLs this machine cannot reach.
        self.repo_map: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._server = ThreadedServer(self._sock, self._build_app, "FakeDaytona")

    # -- lifecycle ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._record])
        r = app.router
        r.add_post("/api/sandbox", self._create)
        r.add_get("/api/sandbox", self._list)
        r.add_get("/api/sandbox/{id}", self._get)
        r.add_delete("/api/sandbox/{id}", self._delete)
        r.add_get("/api/sandbox/{id}/toolbox-proxy-url", self._proxy_url)
        r.add_post("/toolbox/{id}/process/execute", self._execute)
        r.add_post("/toolbox/{id}/files/bulk-upload", self._bulk_upload)
        r.add_post("/toolbox/{id}/files/bulk-download", self._bulk_download)
        r.add_get("/toolbox/{id}/work-dir", self._work_dir)
        r.add_get("/toolbox/{id}/user-home-dir", self._home_dir)
        r.add_post("/toolbox/{id}/git/clone", self._git_clone)
        r.add_route("*", "/{tail:.*}", self._unhandled)
        return app

    def start(self) -> "FakeDaytona":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "FakeDaytona":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        rec = RecordedRequest(request.method, request.path,
                              {k.lower(): v for k, v in request.headers.items()}, body)
        self.requests.append(rec)
        request[REC] = rec
        if request.path.startswith("/api/socket.io"):
            # The SDK's Socket.IO event stream: unsupported here, and the SDK falls back to polling.
            rec.status = 404
            return _error(request, 404, "socket.io is not served by the fake")
        if request.path.startswith(("/api/", "/toolbox/")):
            authz = request.headers.get("Authorization", "")
            if not authz.lower().startswith("bearer ") or (
                self.api_key is not None and authz[7:].strip() != self.api_key
            ):
                rec.status = 401
                return _error(request, 401, "Unauthorized")
        try:
            resp = await handler(request)
        except _NotFound as exc:
            resp = exc.response
        rec.status = resp.status
        return resp

    def _sandbox(self, request: web.Request, *, alive: bool = True) -> FakeSandbox:
        sb = self.sandboxes.get(request.match_info["id"])
        if sb is None or (alive and sb.deleted):
            raise _NotFound(_error(request, 404, "Sandbox not found"))
        return sb

    @staticmethod
    def _resolve(sb: FakeSandbox, path: str | None) -> Path:
        if not path:
            return sb.workdir
        p = Path(path)
        return p if p.is_absolute() else sb.workdir / p

    def _dto(self, sb: FakeSandbox) -> dict:
        p = sb.create_params
        return {
            "id": sb.id,
            "organizationId": "org-fake",
            "name": p.get("name") or sb.id,
            "snapshot": p.get("snapshot") or "daytonaio/sandbox:fake",
            "user": p.get("user") or "daytona",
            "env": p.get("env") or {},
            "labels": p.get("labels") or {},
            "public": bool(p.get("public", False)),
            "networkBlockAll": bool(p.get("networkBlockAll", False)),
            "networkAllowList": p.get("networkAllowList"),
            "kvm": bool(p.get("kvm", False)),
            "target": p.get("target") or "us",
            "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
            "state": sb.state,
            "desiredState": "destroyed" if sb.deleted else "started",
            "autoStopInterval": p.get("autoStopInterval", 15),
            "autoArchiveInterval": p.get("autoArchiveInterval", 10080),
            "autoDeleteInterval": p.get("autoDeleteInterval", -1),
            "createdAt": sb.created_at,
            "updatedAt": sb.created_at,
            "toolboxProxyUrl": self.toolbox_url,
        }

    # -- control plane ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        params = request[REC].json or {}
        sid = f"sb-{uuid.uuid4().hex[:12]}"
        sb = FakeSandbox(id=sid, root=self.root / sid, create_params=params,
                         created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        sb.workdir.mkdir(parents=True)
        sb.home.mkdir(parents=True)
        self.sandboxes[sid] = sb
        return web.json_response(self._dto(sb))

    async def _list(self, request: web.Request) -> web.Response:
        items = [self._dto(sb) for sb in self.sandboxes.values() if not sb.deleted]
        return web.json_response({"items": items, "total": len(items), "page": 1, "totalPages": 1})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._dto(self._sandbox(request, alive=False)))

    async def _delete(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        sb.deleted = True
        sb.state = "destroyed"
        shutil.rmtree(sb.root, ignore_errors=True)
        return web.json_response(self._dto(sb))  # the SDK validates a Sandbox DTO here

    async def _proxy_url(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"url": self.toolbox_url})

    async def _unhandled(self, request: web.Request) -> web.Response:
        rec = request[REC]
        log.warning("fake daytona: unhandled %s %s", request.method, request.path_qs)
        self.unhandled.append(rec)
        return _error(request, 404, f"fake: no route {request.method} {request.path}")

    # -- toolbox ------------------------------------------------------------------------------

    async def _work_dir(self, request: web.Request) -> web.Response:
        return web.json_response({"dir": str(self._sandbox(request).workdir)})

    async def _home_dir(self, request: web.Request) -> web.Response:
        return web.json_response({"dir": str(self._sandbox(request).home)})

    async def _execute(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        command = body.get("command")
        if not isinstance(command, str):
            return _error(request, 400, "command: field required")
        cwd = self._resolve(sb, body.get("cwd"))
        timeout = body.get("timeout") or 10 * 60
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(sb.home), "LANG": "C.UTF-8",
               **(sb.create_params.get("env") or {}), **(body.get("envs") or {})}
        sb.execs.append(body)
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", command, cwd=str(cwd), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            await proc.wait()
            return _error(request, 408, "command execution timeout")
        return web.json_response({"exitCode": proc.returncode, "result": out.decode(errors="replace")})

    async def _bulk_upload(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        reader = await request.multipart()
        paths: dict[str, str] = {}
        written = 0
        async for part in reader:
            name = part.name or ""
            if name.endswith(".path"):
                paths[name[: -len(".path")]] = (await part.read()).decode()
            elif name.endswith(".file"):
                key = name[: -len(".file")]
                dest_name = paths.get(key) or part.filename
                if not dest_name:
                    return web.json_response({"errors": [f"{key}: no destination path"]}, status=400)
                dest = self._resolve(sb, dest_name)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(await part.read())
                written += 1
        if not written:
            return web.json_response({"errors": ["no files in request"]}, status=400)
        return web.Response(status=200)

    async def _bulk_download(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        writer = aiohttp_multipart()
        for src in body.get("paths") or []:
            p = self._resolve(sb, src)
            if p.is_file():
                writer.append(p.read_bytes(), {"Content-Type": "application/octet-stream",
                                               "Content-Disposition": _disposition("file", src)})
            else:
                err = {"message": f"file not found: {src}", "statusCode": 404, "code": "FILE_NOT_FOUND"}
                writer.append(json.dumps(err), {"Content-Type": "application/json",
                                                "Content-Disposition": _disposition("error", src)})
        return web.Response(body=writer, status=200)

    async def _git_clone(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        sb.clones.append(body)
        url, dest = body.get("url"), self._resolve(sb, body.get("path"))
        url = self.repo_map.get(url, url)
        if not url or not body.get("path"):
            return _error(request, 400, "url and path are required")
        args = ["git", "clone", "-q"]
        if body.get("branch"):
            args += ["--branch", body["branch"]]
        if body.get("depth"):
            args += ["--depth", str(body["depth"]), "--no-local"]
        args += [url, str(dest)]
        # The daemon authenticates with username/password in memory (go-git BasicAuth); it never
        # writes them into the clone. Local test remotes need no auth, so they are just recorded.
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(sb.home), "GIT_TERMINAL_PROMPT": "0"}
        ok, out = await _run(args, env=env)
        if ok and body.get("commit_id"):
            ok, out = await _run(["git", "-C", str(dest), "checkout", "-q", "--detach", body["commit_id"]], env=env)
        if not ok:
            return _error(request, 400, f"failed to clone: {out}")
        return web.Response(status=200)


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """The daemon's / API's ErrorResponse shape (path and timestamp are required by the SDK)."""
    body = {"statusCode": status, "message": message, "path": request.path, "method": request.method,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return web.json_response(body, status=status)


def _disposition(name: str, filename: str) -> str:
    # Written by hand: aiohttp's set_content_disposition percent-encodes the filename, while the
    # daemon sends it as a plain quoted string and the SDK matches it against the requested path.
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'form-data; name="{name}"; filename="{escaped}"'


def aiohttp_multipart():
    import aiohttp

    return aiohttp.MultipartWriter("form-data")


async def _run(args: list[str], *, env: dict) -> tuple[bool, str]:
    def go() -> tuple[bool, str]:
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        return p.returncode == 0, (p.stdout + p.stderr).strip()

    return await asyncio.to_thread(go)
