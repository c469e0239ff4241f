"""Git smart HTTP for FakeGitHub: ``git http-backend`` behind GitHub's auth rules for git
(``x-access-token:<installation token>``), with pushes recorded (server thread)."""

from __future__ import annotations

import base64
import gzip
import re
import time

from aiohttp import web
from multidict import CIMultiDict

from ..git_backend import ZERO_SHA, parse_receive_pack_commands, run_http_backend
from .models import Repo
from .traffic import Call


_GIT_HTTP_PATH = re.compile(r"/([^/]+)/([^/]+?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)")


class GitSmartHttp:
    """FakeGitHub's git endpoints: ``/<owner>/<repo>.git/(info/refs|git-upload-pack|git-receive-pack)``."""

    def _git_auth(self, header: str, owner: str, name: str, service: str) -> tuple[Repo | None, int, str]:
        """GitHub's rules for git over HTTP: Basic ``x-access-token:<installation token>`` (or a
        Bearer/token header, as ``http.extraHeader`` sends) for an installation that has the repo."""
        st = self.state
        scheme, _, cred = header.partition(" ")
        value: str | None = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if user == "x-access-token":
                value = password
        elif scheme.lower() in ("bearer", "token"):
            value = cred.strip()
        token = st.tokens.get(value) if value else None
        repo = st.repos.get(f"{owner}/{name}".lower())
        if token is None or token.expires_at < time.time() or repo is None or repo.installation_id != token.installation_id:
            return None, 401, "Invalid username or token. Password authentication is not supported for Git operations.\n"
        inst = st.installations.get(token.installation_id)
        if service == "git-receive-pack" and (inst is None or inst.permissions.get("contents") != "write"):
            return None, 403, f"Permission to {repo.full_name}.git denied to {st.bot_login}.\n"
        return repo, 200, ""

    async def _git_http(self, request: web.Request, owner: str, name: str, tail: str) -> web.StreamResponse:
        """Git smart HTTP through ``git http-backend`` (not REST: never checked against the OpenAPI spec)."""
        st = self.state
        body = await request.read()  # aiohttp has already undone a gzip Content-Encoding
        method = request.method.upper()
        service = request.query.get("service", "") if tail == "info/refs" else tail
        query = {k: request.query.get(k) for k in request.query.keys()}
        with st.lock:
            for fault in self._faults:  # fail_next() works for git paths too (e.g. a 500 during a push)
                if fault.matches(method, request.path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers),
                                            fault.status))
                    text = fault.body.get("message", "") if isinstance(fault.body, dict) else str(fault.body)
                    return web.Response(status=fault.status, text=text + "\n", headers=fault.headers)
            repo, status, message = self._git_auth(request.headers.get("Authorization", ""), owner, name, service)
        if repo is None:
            with st.lock:
                self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers), status))
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="GitHub"'
            return web.Response(status=status, body=message.encode(), headers=headers)
        http_headers = {}
        if request.headers.get("Git-Protocol"):
            http_headers["Git-Protocol"] = request.headers["Git-Protocol"]
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip" and body[:2] == b"\x1f\x8b"
        if gzipped:
            http_headers["Content-Encoding"] = "gzip"
        cgi = await run_http_backend(
            project_root=st.git_root / "repos", home=st.git_root,
            path_info=f"/{repo.owner.lower()}/{repo.name.lower()}.git/{tail}", method=method,
            query=request.query_string, content_type=request.headers.get("Content-Type", ""), body=body,
            remote_user="x-access-token", http_headers=http_headers,
        )
        with st.lock:
            if tail == "git-receive-pack" and cgi.status == 200:
                for old, new, ref in parse_receive_pack_commands(gzip.decompress(body) if gzipped else body):
                    if (repo.git.ref_sha(ref) or ZERO_SHA) == new:  # the update was accepted
                        st.pushes.append((repo.full_name, ref, old, new))
            self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers), cgi.status))
        headers = CIMultiDict((k, v) for k, v in cgi.headers if k.lower() not in ("content-length", "transfer-encoding"))
        return web.Response(status=cgi.status, body=cgi.body, headers=headers)
