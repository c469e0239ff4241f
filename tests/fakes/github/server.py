"""FakeGitHub's request handling (server thread): dispatch, GitHub's auth rules (App JWT,
installation tokens scoped to their repositories), rate-limit headers, injected faults, and the
OpenAPI validation hook on every request and response; plus the traffic a test inspects."""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import Counter
from typing import Any

import jwt
from aiohttp import web
from multidict import CIMultiDict

from . import graphql, rest  # noqa: F401  (importing them registers their routes)
from .common import DOCS, JWT_LEEWAY_SECONDS, RATE_LIMIT
from .git_http import _GIT_HTTP_PATH
from .manifest_flow import _WEB_NEW_APP_PATH
from .routing import AUTH_INSTALLATION, AUTH_JWT, ROUTES, ApiError, Reply, RequestContext, Route
from .traffic import Call, _Fault

# The REST API versions GitHub serves; any other X-GitHub-Api-Version is a 400.
SUPPORTED_API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})


class RequestHandling:
    """What FakeGitHub does with a request, and what a test reads back (calls, violations, faults)."""

    @property
    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self._calls)

    def calls_matching(self, method: str, path_regex: str) -> list[Call]:
        rx = re.compile(path_regex)
        return [c for c in self.calls if c.method == method.upper() and rx.search(c.path)]

    @property
    def violations(self) -> list[str]:
        with self.state.lock:
            return list(self._violations)

    def reset_calls(self) -> None:
        with self.state.lock:
            self._calls.clear()

    def fail_next(self, method: str, path_regex: str, status: int, headers: dict[str, str] | None = None,
                  body: Any = None, times: int = 1, performed: bool = False) -> None:
        """The next ``times`` requests matching ``method`` ("*" for any) and ``path_regex`` get ``status``.

        Injected faults skip auth and response validation: they model GitHub
        outages (502), secondary rate limits (403 + retry-after) and 429s. With
        ``performed=True`` the request is carried out first and only its answer is
        replaced (a timeout or 5xx after GitHub created the comment).
        """
        if body is None:
            msg = {403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                   429: "API rate limit exceeded"}.get(status, "Server Error")
            body = {"message": msg, "documentation_url": DOCS, "status": str(status)}
        with self.state.lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times,
                                       performed))

    # -- request handling (server thread) -----------------------------------

    def _rate_headers(self, key: str, count: bool = True) -> dict[str, str]:
        st = self.state
        if time.time() - st.rate_window_start >= 3600:
            st.rate_window_start, st.rate_used = time.time(), Counter()
        st.rate_used[key] += 1 if count else 0
        used = st.rate_used[key]
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(max(0, RATE_LIMIT - used)),
            "x-ratelimit-reset": str(int(st.rate_window_start + 3600)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
        }

    def _authenticate(self, rt: Route, ctx: RequestContext) -> None:
        """GitHub's auth rules for the route; raises ApiError(401/404)."""
        header = ctx.headers.get("Authorization", "")
        scheme, _, cred = header.partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if rt.auth == AUTH_JWT:
            if scheme != "bearer" or not cred:
                raise ApiError(401, "A JSON web token could not be decoded", docs=f"{DOCS}")
            self._verify_jwt(cred)
            return
        if rt.auth != AUTH_INSTALLATION:
            return
        if scheme not in ("token", "bearer") or not cred:
            raise ApiError(401, "Requires authentication", docs=f"{DOCS}")
        token = self.state.tokens.get(cred)
        if token is None or token.expires_at < time.time():
            raise ApiError(401, "Bad credentials", docs=f"{DOCS}")
        ctx.installation = self.state.installations.get(token.installation_id)
        if "owner" in ctx.params and "repo" in ctx.params:
            repo = self.state.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
            if repo is None or repo.installation_id != token.installation_id:
                raise ApiError(404, "Not Found")  # GitHub hides repos the token cannot see
            ctx.repo = repo

    def _verify_jwt(self, token: str) -> None:
        st = self.state
        if st.public_key_pem is None:
            raise ApiError(500, "FakeGitHub was created without public_key_pem")
        try:
            claims = jwt.decode(token, st.public_key_pem, algorithms=["RS256"], leeway=JWT_LEEWAY_SECONDS,
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires") from None
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded ({exc})") from None
        if str(claims["iss"]) != str(st.app_id):
            raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
        # GitHub refuses JWTs valid for more than 10 minutes.
        if claims["exp"] > time.time() + 600 + JWT_LEEWAY_SECONDS:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/favicon.ico":  # browsers on the web pages ask; github.com has one
            return web.Response(status=404)
        web_new_app = _WEB_NEW_APP_PATH.fullmatch(request.path)
        if web_new_app is not None:
            return await self._web_new_app(request, web_new_app.group(1))
        git_path = _GIT_HTTP_PATH.fullmatch(request.path)
        if git_path is not None:
            return await self._git_http(request, *git_path.groups())
        raw = await request.read()
        method = request.method.upper()
        path = request.path
        raw_path = request.raw_path.split("?", 1)[0]
        query = {k: (v[0] if len(v) == 1 else v) for k in request.query.keys() if (v := request.query.getall(k))}
        body: Any = None
        bad_json = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json, body = True, raw.decode("utf-8", "replace")
        with self.state.lock:
            reply, check_response = self._handle(method, path, raw_path, query, body, bad_json, request.headers)
            auth_key = request.headers.get("Authorization", request.remote or "anon")
            etag = _etag(reply, auth_key) if method == "GET" else None
            not_modified = etag is not None and etag in _listed(request.headers.get("If-None-Match", ""))
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Api-Version-Selected": "2022-11-28",
                "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
                **self._rate_headers(auth_key, count=not not_modified),  # a 304 costs no rate limit
                **reply.headers,
            }
            if etag is not None:
                headers["ETag"] = etag
            if not_modified:  # GitHub's answer to a matching If-None-Match: no body, not checked by the spec
                reply, check_response = Reply(304, None, {}), False
            if self.validator is not None and check_response:
                for v in self.validator.check_response(method, raw_path, reply.status, reply.body):
                    if reply.status >= 400 and ("is valid under each of" in v or "the spec documents none" in v):
                        # Two defects of the description for errors: some error bodies are a oneOf of
                        # overlapping schemas (basic-error vs repository-rule-violation-error for a
                        # contents 409; any real error matches both), and some errors are documented
                        # without a body (a 422 from DELETE git/refs) although GitHub always sends one.
                        continue
                    self._violations.append(f"response: {v}")
            self._calls.append(Call(method, path, query, body, CIMultiDict(request.headers), reply.status))
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        if reply.body is None:
            headers.pop("Content-Type")
        return web.Response(status=reply.status, body=payload, headers=headers)

    def _handle(self, method: str, path: str, raw_path: str, query: dict[str, Any], body: Any, bad_json: bool,
                headers: Any) -> tuple[Reply, bool]:
        """Returns the reply and whether it should be checked against the spec."""
        body_errors: list[str] = []
        if self.validator is not None:
            if bad_json:
                self._violations.append(f"request: {method} {path}: body is not valid JSON")
            else:
                params_v, body_errors = self.validator.check_request_parts(method, raw_path, query, body)
                self._violations.extend(f"request: {v}" for v in params_v + body_errors)

        version = headers.get("X-GitHub-Api-Version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:  # what GitHub answers
            return Reply(400, {"message": f"API version '{version}' is not supported.",
                               "documentation_url": "https://docs.github.com/rest/about-the-rest-api/api-versions"}), False
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                if fault.performed:
                    self._route(method, path, raw_path, query, body, bad_json, headers, body_errors)
                return Reply(fault.status, fault.body, dict(fault.headers)), False
        return self._route(method, path, raw_path, query, body, bad_json, headers, body_errors)

    def _route(self, method: str, path: str, raw_path: str, query: dict[str, Any], body: Any, bad_json: bool,
               headers: Any, body_errors: list[str]) -> tuple[Reply, bool]:
        for rt in ROUTES:
            if rt.method != method:
                continue
            params = rt.template.match(raw_path)
            if params is None:
                continue
            ctx = RequestContext(self.state, method, path, params, query, body, headers)
            try:
                self._authenticate(rt, ctx)
                if bad_json:
                    raise ApiError(400, "Problems parsing JSON")
                if body_errors:
                    # GitHub's answer to a body that breaks the schema.
                    raise ApiError(422, "Invalid request.\n\n" + "\n".join(
                        e.split(": request body ", 1)[-1] for e in body_errors))
                return rt.handler(ctx), True
            except ApiError as exc:
                return Reply(exc.status, exc.body, exc.headers), True
        if self.validator is not None and (raw_path == "/graphql" or self.validator.find_operation(method, raw_path)):
            # A real GitHub endpoint the fake does not implement yet: flag it, since
            # the 404 below is not what GitHub would answer. Add a @route for it.
            self._violations.append(f"fake: {method} {path} is documented by GitHub but not implemented by FakeGitHub")
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}), True


def _etag(reply: Reply, auth: str) -> str | None:
    """A weak ETag like GitHub's for a successful GET: its body as this requester sees it (GitHub's
    answers vary by Authorization, so another token's ETag never matches)."""
    if reply.status != 200 or reply.body is None:
        return None
    digest = hashlib.sha256(auth.encode() + json.dumps(reply.body, sort_keys=True).encode()).hexdigest()[:40]
    return f'W/"{digest}"'


def _listed(header: str) -> set[str]:
    return {t.strip() for t in header.split(",") if t.strip()}
