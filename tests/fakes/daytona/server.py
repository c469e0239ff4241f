"""FakeDaytona: the aiohttp server (own thread and loop), its routes, auth and request recording,
and the control plane (create, list, get, delete sandboxes); the toolbox handlers come from the
mixins in process.py, files.py and git_clone.py."""
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
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from .._server import ThreadedServer
from .common import REC, SHELLS, USER, RecordedRequest, _error, _HttpError, _killpg
from .files import FileToolbox
from .git_clone import GitToolbox
from .jail import _Jail, jail_unavailable_reason
from .process import ProcessToolbox
from .sandbox import FakeSandbox


log = logging.getLogger("tests.fakes.daytona")


class FakeDaytona(ProcessToolbox, FileToolbox, GitToolbox):
    """The Daytona control plane and, per sandbox, the toolbox daemon, on 127.0.0.1 (see the package docstring)."""

    def __init__(self, *, api_key: str | None = None, root: str | Path | None = None,
                 network_blocked_by_default: bool = True) -> None:
        self.api_key = api_key  # None: accept any bearer token
        self._tmp = None if root else tempfile.mkdtemp(prefix="fake-daytona-")
        self.root = Path(root or self._tmp)
        os.chmod(self.root, 0o755)
        self.network_blocked_by_default = network_blocked_by_default
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.toolbox_url = f"{self.url}/toolbox"
        self.sandboxes: dict[str, FakeSandbox] = {}
        # Remote URL -> local repo path: what `git/clone` fetches "from the internet".
        self.repo_map: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._create_faults: deque[int] = deque()
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
        t = "/toolbox/{id}"
        r.add_get(f"{t}/work-dir", self._work_dir)
        r.add_get(f"{t}/user-home-dir", self._work_dir)
        r.add_post(f"{t}/process/execute", self._execute)
        r.add_post(f"{t}/process/session", self._session_create)
        r.add_get(f"{t}/process/session", self._session_list)
        r.add_get(f"{t}/process/session/{{sid}}", self._session_get)
        r.add_delete(f"{t}/process/session/{{sid}}", self._session_delete)
        r.add_post(f"{t}/process/session/{{sid}}/exec", self._session_exec)
        r.add_get(f"{t}/process/session/{{sid}}/command/{{cid}}", self._command_get)
        r.add_get(f"{t}/process/session/{{sid}}/command/{{cid}}/logs", self._command_logs)
        r.add_post(f"{t}/process/session/{{sid}}/command/{{cid}}/input", self._command_input)
        r.add_post(f"{t}/files/bulk-upload", self._bulk_upload)
        r.add_post(f"{t}/files/bulk-download", self._bulk_download)
        r.add_get(f"{t}/files", self._files_list)
        r.add_get(f"{t}/files/info", self._files_info)
        r.add_delete(f"{t}/files", self._files_delete)
        r.add_post(f"{t}/files/folder", self._files_folder)
        r.add_post(f"{t}/files/move", self._files_move)
        r.add_post(f"{t}/git/clone", self._git_clone)
        r.add_route("*", "/{tail:.*}", self._unhandled)
        return app

    def start(self) -> "FakeDaytona":
        reason = jail_unavailable_reason()
        if reason:
            import pytest

            self.stop()
            pytest.skip(f"Daytona stand-in needs a bubblewrap jail: {reason}")
        self._server.start()
        return self

    def stop(self) -> None:
        for sb in list(self.sandboxes.values()):
            self._destroy(sb)
        self._server.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "FakeDaytona":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next_creates(self, count: int = 1, *, status: int = 429) -> None:
        """The next `count` `POST /api/sandbox` answer `status` (429 with Retry-After, or 503)."""
        self._create_faults.extend([status] * count)

    # -- helpers ------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        rec = RecordedRequest(request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                              query=dict(request.query))
        self.requests.append(rec)
        request[REC] = rec
        if request.path.startswith("/api/socket.io"):
            # The SDK's Socket.IO event stream: not served; the SDK falls back to polling.
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
        except _HttpError as exc:
            resp = _error(request, exc.status, exc.message, exc.code)
        rec.status = resp.status
        return resp

    def _sandbox(self, request: web.Request, *, alive: bool = True) -> FakeSandbox:
        sb = self.sandboxes.get(request.match_info["id"])
        if sb is None or (alive and sb.deleted):
            raise _HttpError(404, "Sandbox not found")
        return sb

    @staticmethod
    def _jail(sb: FakeSandbox) -> _Jail:
        assert sb.jail is not None
        return sb.jail

    def _dto(self, sb: FakeSandbox) -> dict:
        p = sb.create_params
        return {
            "id": sb.id,
            "organizationId": "org-fake",
            "name": p.get("name") or sb.id,
            "snapshot": p.get("snapshot") or "daytonaio/sandbox:fake",
            "user": p.get("user") or USER,
            "env": p.get("env") or {},
            "labels": p.get("labels") or {},
            "public": bool(p.get("public", False)),
            "networkBlockAll": sb.network_block_all,
            "networkAllowList": p.get("networkAllowList"),
            "domainAllowList": p.get("domainAllowList"),
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

    async def _spawn(self, sb: FakeSandbox, argv: list[str], *, cwd: str, env: dict, stdin: Any = subprocess.DEVNULL,
                     stdout: Any = subprocess.PIPE, stderr: Any = subprocess.STDOUT) -> asyncio.subprocess.Process:
        """Start `argv` inside the sandbox, in its own process group (so a timeout can end it all)."""
        return await asyncio.create_subprocess_exec(*self._jail(sb).enter(argv, cwd=cwd), env=env, stdin=stdin,
                                                    stdout=stdout, stderr=stderr, start_new_session=True)

    @staticmethod
    def _shell() -> str:
        return next(s for s in SHELLS if os.path.exists(s))

    # -- control plane ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        if self._create_faults:
            status = self._create_faults.popleft()
            message = "Too many requests" if status == 429 else "Service unavailable"
            resp = _error(request, status, message, source="api")
            if status == 429:
                resp.headers["Retry-After"] = "1"
            return resp
        params = request[REC].json or {}
        sid = str(uuid.uuid4())
        block = params.get("networkBlockAll")
        sb = FakeSandbox(id=sid, dir=self.root / sid, create_params=params,
                         network_block_all=self.network_blocked_by_default if block is None else bool(block),
                         created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        sb.dir.mkdir()
        sb.jail = _Jail(sb.dir, sid[:12], network=not sb.network_block_all)
        try:
            await asyncio.to_thread(sb.jail.prepare)
            sb.jail.spawn()
            await asyncio.to_thread(sb.jail.wait_ready)
        except (OSError, RuntimeError) as exc:
            await asyncio.to_thread(sb.jail.kill_sync)
            return _error(request, 500, f"sandbox failed to start: {exc}", source="api")
        self.sandboxes[sid] = sb
        return web.json_response(self._dto(sb))

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        want = json.loads(q["labels"]) if q.get("labels") else {}
        states = set(q.getall("states", []))
        items = [sb for sb in self.sandboxes.values()
                 if (sb.state in states if states else not sb.deleted)
                 and all(sb.labels.get(k) == v for k, v in want.items())]
        start, limit = int(q.get("cursor") or 0), int(q.get("limit") or 100)
        page = items[start:start + limit]
        more = start + limit < len(items)
        return web.json_response({"items": [self._dto(sb) for sb in page],
                                  "nextCursor": str(start + limit) if more else None})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._dto(self._sandbox(request, alive=False)))

    async def _delete(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        await asyncio.to_thread(self._destroy, sb)
        return web.json_response(self._dto(sb))  # the SDK validates a Sandbox DTO here

    def _destroy(self, sb: FakeSandbox) -> None:
        """Ends every process of the sandbox (its PID namespace) and removes its root."""
        if sb.deleted:
            return
        sb.deleted, sb.state = True, "destroyed"
        for session in sb.sessions.values():
            session.deleted = True
            _killpg(session.proc)
        if sb.jail is not None:
            sb.jail.kill_sync()
        shutil.rmtree(sb.dir, ignore_errors=True)

    async def _proxy_url(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"url": self.toolbox_url})

    async def _unhandled(self, request: web.Request) -> web.Response:
        rec = request[REC]
        log.warning("fake daytona: unhandled %s %s", request.method, request.path_qs)
        self.unhandled.append(rec)
        return _error(request, 404, f"fake: no route {request.method} {request.path}")
