"""First-run setup: register the GitHub App from manifest.yml (GitHub's App-manifest flow).

Like Probot: when omoi starts without App credentials, `GET /` and `GET /setup` show a page
whose button POSTs the manifest (URLs filled from `public_url`) to
`{github_web_url}/settings/apps/new` (or `/organizations/<org>/settings/apps/new`). GitHub
creates the App and sends the browser to `/setup/callback?code=...&state=...`; omoi checks
the state, exchanges the code (`POST /app-manifests/{code}/conversions`, no auth) and writes
the App id, private key and webhook secret to `.env`. From then on the setup pages are 404.

Risk noted: an exposed setup page lets whoever reaches it first register *their* App into
this server's .env. It is therefore enabled only by `serve` (or `web --setup`), only while
no credentials exist, and the state is single-use and expires.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web
from gidgethub import GitHubException
from gidgethub.aiohttp import GitHubAPI

from app.config import ROOT, Settings
from app.observability.logs import get_logger
from app.web.pages import error_page, page

log = get_logger("omoi.setup")
MANIFEST_PATH = ROOT / "manifest.yml"
STATE_TTL_SECONDS = 3600
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
ENV_KEYS = ("OMOI_GITHUB_APP_ID", "OMOI_GITHUB_PRIVATE_KEY", "OMOI_WEBHOOK_SECRET")


class SetupState:
    """Per-process setup status, plus the pending `state` values (a file under data_dir, so a
    restart between the button and GitHub's redirect does not break the flow)."""

    def __init__(self, settings: Settings, env_path: Path | None = None) -> None:
        self.settings = settings
        self.env_path = Path(env_path) if env_path is not None else Path(".env")
        self.completed = settings.has_app_credentials()
        self._lock = asyncio.Lock()

    @property
    def _file(self) -> Path:
        return Path(self.settings.data_dir) / "setup-states.json"

    def _load(self) -> dict[str, float]:
        try:
            data = json.loads(self._file.read_text())
        except (OSError, ValueError):
            return {}
        now = time.time()
        return {k: v for k, v in data.items() if isinstance(v, (int, float)) and v > now}

    def _save(self, states: dict[str, float]) -> None:
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(states, fh)
        tmp.replace(self._file)

    def new_state(self) -> str:
        states = self._load()
        value = secrets.token_urlsafe(24)
        states[value] = time.time() + STATE_TTL_SECONDS
        self._save(states)
        return value

    def consume_state(self, value: str) -> bool:
        """True once for a state this server issued within the last hour."""
        states = self._load()
        ok = bool(value) and any(secrets.compare_digest(value, k) for k in states)
        if ok:
            states.pop(value, None)
        self._save(states)
        return ok


SETUP_KEY = web.AppKey("setup", SetupState)


def manifest(settings: Settings) -> dict:
    """manifest.yml as GitHub expects it, with this server's URLs filled in."""
    data = yaml.safe_load(MANIFEST_PATH.read_text())
    base = settings.resolved_public_url()
    data["url"] = base
    data.setdefault("hook_attributes", {})["url"] = settings.webhook_proxy_url or f"{base}/webhooks/github"
    data["redirect_url"] = f"{base}/setup/callback"
    # omoi has no OAuth login and no post-install page: leave GitHub's defaults.
    for key in ("callback_urls", "setup_url", "setup_on_update", "request_oauth_on_install"):
        data.pop(key, None)
    return data


def registration_url(settings: Settings, org: str | None) -> str:
    web_url = settings.github_web_url
    if org:
        return f"{web_url}/organizations/{org}/settings/apps/new"
    return f"{web_url}/settings/apps/new"


def _env_quote(value: str) -> str:
    # One line, double-quoted: python-dotenv turns \n back into newlines (and private_key_pem()
    # also accepts a literal \n), so the PEM survives `.env` and `docker --env-file` alike.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n") + '"'


def write_env(path: Path, values: dict[str, str]) -> None:
    """Set `values` in the .env at `path`: replaces those keys, keeps every other line, mode 0600."""
    lines = path.read_text().splitlines() if path.exists() else []
    pattern = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
    kept = [line for line in lines if not ((m := pattern.match(line)) and m.group(1) in values)]
    while kept and not kept[-1].strip():
        kept.pop()
    new = kept + [f"{k}={_env_quote(v)}" for k, v in values.items()]
    tmp = path.with_name(path.name + ".omoi-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(new) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def convert_code(settings: Settings, code: str) -> dict:
    """POST /app-manifests/{code}/conversions (unauthenticated, as GitHub documents)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        gh = GitHubAPI(session, "omoi-setup", base_url=settings.github_api_url)
        return await gh.post("/app-manifests/{code}/conversions", url_vars={"code": code}, data=b"",
                             content_type="application/json")


def _state(request: web.Request) -> SetupState:
    return request.app[SETUP_KEY]


async def setup_page(request: web.Request) -> web.Response:
    st = _state(request)
    if st.completed:
        raise web.HTTPNotFound()
    org = request.query.get("org", "").strip() or None
    if org is not None and not _ORG_RE.match(org):
        return error_page(400, "bad_org")
    state = await asyncio.to_thread(st.new_state)
    data = manifest(st.settings)
    return page(
        "setup.html.j2",
        action=registration_url(st.settings, org) + "?state=" + state,
        manifest_json=json.dumps(data),
        manifest=data,
        org=org,
        github_web_url=st.settings.github_web_url,
    )


async def setup_callback(request: web.Request) -> web.Response:
    st = _state(request)
    if st.completed:
        raise web.HTTPNotFound()
    code = request.query.get("code", "")
    state = request.query.get("state", "")
    async with st._lock:  # one exchange at a time: a code and a state are single-use
        if not await asyncio.to_thread(st.consume_state, state):
            log.warning("setup_state_invalid")
            return error_page(403, "bad_state")
        if not _CODE_RE.match(code):
            return error_page(400, "bad_code")
        try:
            app_data = await convert_code(st.settings, code)
        except (GitHubException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.error("setup_conversion_failed", error=exc.__class__.__name__)
            return error_page(502, "conversion_failed")
        values = {"OMOI_GITHUB_APP_ID": str(app_data["id"]), "OMOI_GITHUB_PRIVATE_KEY": app_data["pem"]}
        if app_data.get("webhook_secret"):
            values["OMOI_WEBHOOK_SECRET"] = app_data["webhook_secret"]
        await asyncio.to_thread(write_env, st.env_path, values)
        st.completed = True
    html_url = app_data.get("html_url") or f"{st.settings.github_web_url}/apps/{app_data.get('slug', '')}"
    log.info("setup_app_registered", app_id=app_data["id"], slug=app_data.get("slug"))
    return page(
        "setup_done.html.j2",
        app_name=app_data.get("name") or app_data.get("slug") or "omoi",
        app_id=app_data["id"],
        html_url=html_url,
        install_url=html_url.rstrip("/") + "/installations/new",
        env_path=str(st.env_path.resolve()),
        webhook_secret_written="OMOI_WEBHOOK_SECRET" in values,
    )


def add_setup_routes(app: web.Application, settings: Settings, env_path: Path | None = None) -> None:
    app[SETUP_KEY] = SetupState(settings, env_path)
    app.router.add_get("/", setup_page)
    app.router.add_get("/setup", setup_page)
    app.router.add_get("/setup/callback", setup_callback)
