"""The toolbox's ``git/clone``: URLs of ``fake.repo_map`` come "from the internet" (cloned by the
fake, only when the sandbox has network); any other URL is cloned by git inside the jail."""
from __future__ import annotations

import asyncio
import base64
import os
import posixpath
import shutil
import subprocess
import uuid

from aiohttp import web

from .common import HOME, INSIDE_PATH, REC, _absolute, _HttpError
from .sandbox import FakeSandbox


class GitToolbox:
    """FakeDaytona's ``/toolbox/{id}/git/clone`` handler."""

    # -- toolbox: git -------------------------------------------------------------------------

    async def _git_clone(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        sb.clones.append(body)
        url, path = body.get("url"), body.get("path")
        if not url or not path:
            raise _HttpError(400, "url and path are required", "INVALID_REQUEST_BODY")
        dest = posixpath.normpath(_absolute(path))
        args = ["clone", "-q"]
        if body.get("branch"):
            args += ["--branch", body["branch"]]
        if body.get("depth"):
            args += ["--depth", str(body["depth"])]
        if url in self.repo_map:
            ok, out = await self._clone_from_internet(sb, self.repo_map[url], args, dest, body.get("commit_id"))
        else:
            ok, out = await self._clone_inside(sb, url, args, dest, body)
        if not ok:
            raise _HttpError(400, f"failed to clone repository: {out}", "GIT_TRANSPORT_FAILED")
        return web.Response(status=200)

    async def _clone_from_internet(self, sb: FakeSandbox, source: str, args: list[str], dest: str,
                                   commit: str | None) -> tuple[bool, str]:
        """A URL of `repo_map`: "the internet" is the host, reachable only with network."""
        if sb.network_block_all:
            return False, "dial tcp: lookup: network is unreachable (the sandbox has no network)"
        target = self._jail(sb).resolve(dest)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            return False, f"destination path '{dest}' already exists and is not an empty directory"
        staging = sb.dir / f"clone-{uuid.uuid4().hex}"
        env = {"PATH": os.environ.get("PATH", INSIDE_PATH), "HOME": str(sb.dir), "GIT_TERMINAL_PROMPT": "0",
               "GIT_CONFIG_NOSYSTEM": "1"}
        extra = ["--no-local"] if "--depth" in args else []
        ok, out = await _run(["git", *args, *extra, source, str(staging)], env=env)
        if ok and commit:
            ok, out = await _run(["git", "-C", str(staging), "checkout", "-q", "--detach", commit], env=env)
        if ok:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.rmdir()
            os.rename(staging, target)
        shutil.rmtree(staging, ignore_errors=True)
        return ok, out

    async def _clone_inside(self, sb: FakeSandbox, url: str, args: list[str], dest: str,
                            body: dict) -> tuple[bool, str]:
        """Any other URL: git runs in the sandbox; credentials only in its environment, never in .git/config."""
        env = sb.env({"GIT_TERMINAL_PROMPT": "0"})
        if body.get("password"):
            basic = base64.b64encode(f"{body.get('username') or 'git'}:{body['password']}".encode()).decode()
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                       GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
        proc = await self._spawn(sb, ["git", *args, url, dest], cwd=HOME, env=env)
        out, _ = await proc.communicate()
        ok = proc.returncode == 0
        if ok and body.get("commit_id"):
            proc = await self._spawn(sb, ["git", "-C", dest, "checkout", "-q", "--detach", body["commit_id"]],
                                     cwd=HOME, env=env)
            out, _ = await proc.communicate()
            ok = proc.returncode == 0
        return ok, out.decode(errors="replace").strip()


async def _run(args: list[str], *, env: dict) -> tuple[bool, str]:
    def go() -> tuple[bool, str]:
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        return p.returncode == 0, (p.stdout + p.stderr).strip()

    return await asyncio.to_thread(go)
