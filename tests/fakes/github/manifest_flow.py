"""The browser side of GitHub's App-manifest flow: github.com's "Register new GitHub App" page
(HTML, not the API) and the FakeGitHub helpers that mint manifest codes and list created Apps."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import CIMultiDict

from .rest.app_manifests import manifest_problems
from .traffic import Call


_WEB_NEW_APP_PATH = re.compile(r"/(?:organizations/([^/]+)/)?settings/apps/new")


def _html(status: int, title: str, body: str, head: str = "") -> web.Response:
    from html import escape

    return web.Response(status=status, content_type="text/html", charset="utf-8", text=(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{head}</head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"))


class ManifestFlow:
    """FakeGitHub's manifest pages (server thread) and manifest helpers (test thread)."""

    async def _web_new_app(self, request: web.Request, org: str | None) -> web.StreamResponse:
        """github.com's "Create GitHub App" page for the manifest flow (HTML, not the API).

        GitHub shows the manifest and, once the person confirms, redirects the browser to the
        manifest's redirect_url with ``?code=...&state=...``. Here the confirmation is implicit:
        the page redirects at once (``<meta http-equiv=refresh>``).
        """
        from html import escape

        st = self.state
        if request.method != "POST":
            return _html(200, "Register new GitHub App", "<p>Fill in the form (not simulated).</p>")
        form = await request.post()
        raw = form.get("manifest")
        state = request.query.get("state", "")
        try:
            manifest = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            manifest = None
        problems = manifest_problems(manifest) if manifest is not None else ["manifest is not valid JSON"]
        with st.lock:
            self._calls.append(Call("POST", request.path, {"state": state}, manifest, CIMultiDict(request.headers),
                                    422 if problems else 200))
            if problems:
                self._violations.extend(f"manifest: {p}" for p in problems)
                return _html(422, "Invalid GitHub App manifest",
                             "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>")
            code = secrets.token_hex(10)
            st.manifest_codes[code] = {"manifest": manifest, "org": org, "user": "octocat",
                                       "expires_at": time.time() + 3600}
        redirect = manifest.get("redirect_url")
        if not redirect:
            return _html(200, "GitHub App created", "<p>No redirect_url in the manifest.</p>")
        target = redirect + ("&" if "?" in redirect else "?") + urlencode({"code": code, "state": state})
        return _html(200, f"Create GitHub App for {manifest.get('name', '')}",
                     f"<p id='confirm'>Creating {escape(manifest.get('name', ''))}"
                     f"{' for ' + escape(org) if org else ''}…</p><p><a href='{escape(target)}'>Continue</a></p>",
                     head=f"<meta http-equiv='refresh' content='0; url={escape(target)}'>")

    def manifest_code(self, manifest: dict[str, Any], org: str | None = None) -> str:
        """A code as if a person had confirmed ``manifest`` on GitHub (without a browser)."""
        problems = manifest_problems(manifest)
        if problems:
            raise ValueError("; ".join(problems))
        code = secrets.token_hex(10)
        with self.state.lock:
            self.state.manifest_codes[code] = {"manifest": copy.deepcopy(manifest), "org": org, "user": "octocat",
                                               "expires_at": time.time() + 3600}
        return code

    @property
    def manifest_apps(self) -> list[dict[str, Any]]:
        """Apps created through POST /app-manifests/{code}/conversions (response JSON + manifest, org)."""
        with self.state.lock:
            return copy.deepcopy(self.state.manifest_apps)
