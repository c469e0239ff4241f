"""First-run setup (GitHub's App-manifest flow) against the GitHub stand-in: HTTP level
in-process, then the real `python -m app serve` driven by a real headless Chromium."""
from __future__ import annotations

import hashlib
import hmac
import json
import stat
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dotenv import dotenv_values
from pydantic import SecretStr

from app.config import ROOT, Settings, reset_settings_cache
from app.db.migrate import upgrade
from app.web.server import create_app
from tests.fakes.github import manifest_problems
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_available
from tests.support.env import WEBHOOK_SECRET
from tests.support.services import require_service
from tests.support.waits import wait_for

PUBLIC = "https://omoi.example.test"


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method"), "inputs": {}})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][a.get("name")] = a.get("value")


def _form(html: str) -> dict:
    p = _FormParser()
    p.feed(html)
    assert len(p.forms) == 1, p.forms
    return p.forms[0]


@pytest.fixture
def setup_settings(monkeypatch, tmp_path, fake_github):
    """Settings of a first start: a webhook secret (serve makes one) but no App yet."""
    monkeypatch.chdir(tmp_path)
    for key in ("OMOI_GITHUB_APP_ID", "OMOI_GITHUB_PRIVATE_KEY", "OMOI_GITHUB_PRIVATE_KEY_PATH"):
        monkeypatch.delenv(key, raising=False)
    db = f"sqlite:///{tmp_path}/omoi.db"
    env = {
        "OMOI_WEBHOOK_SECRET": WEBHOOK_SECRET, "OMOI_DATABASE_URL": db, "OMOI_BROKER_URL": "memory://",
        "OMOI_DATA_DIR": str(tmp_path / "data"), "OMOI_GITHUB_API_URL": fake_github.url,
        "OMOI_GITHUB_WEB_URL": fake_github.url, "OMOI_PUBLIC_URL": PUBLIC,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    upgrade(db)
    yield Settings()
    reset_settings_cache()


@pytest.fixture
async def client(setup_settings, aiohttp_client):
    return await aiohttp_client(create_app(setup_settings, setup=True))


async def _start(client, query: str = "") -> tuple[str, dict, str]:
    resp = await client.get("/setup" + query)
    assert resp.status == 200, await resp.text()
    form = _form(await resp.text())
    assert form["method"] == "post"
    action = form["action"]
    state = action.split("?state=", 1)[1]
    return action, json.loads(form["inputs"]["manifest"]), state


async def test_setup_page_posts_the_manifest_with_this_servers_urls(client, fake_github):
    resp = await client.get("/")
    assert resp.status == 200
    html = await resp.text()
    assert "Register GitHub App" in html
    assert resp.headers["Cache-Control"] == "no-store"
    action, manifest, state = await _start(client)
    assert action == f"{fake_github.url}/settings/apps/new?state={state}"
    assert len(state) >= 32
    assert manifest["url"] == PUBLIC
    assert manifest["hook_attributes"] == {"url": f"{PUBLIC}/webhooks/github", "active": True}
    assert manifest["redirect_url"] == f"{PUBLIC}/setup/callback"
    committed = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert manifest["default_permissions"] == committed["default_permissions"]
    assert manifest["default_events"] == committed["default_events"]
    assert "callback_urls" not in manifest and "setup_url" not in manifest
    assert manifest_problems(manifest) == []
    # Every page load gets its own state.
    assert (await _start(client))[2] != state


async def test_organization_and_proxy_urls(setup_settings, aiohttp_client, fake_github, monkeypatch):
    monkeypatch.setenv("OMOI_WEBHOOK_PROXY_URL", "https://smee.io/abc123")
    client = await aiohttp_client(create_app(Settings(), setup=True))
    action, manifest, state = await _start(client, "?org=acme-corp")
    assert action == f"{fake_github.url}/organizations/acme-corp/settings/apps/new?state={state}"
    assert manifest["hook_attributes"]["url"] == "https://smee.io/abc123"
    assert manifest["redirect_url"] == f"{PUBLIC}/setup/callback"
    assert (await client.get("/setup?org=../../evil")).status == 400


async def test_callback_exchanges_the_code_and_writes_env(client, fake_github, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nANTHROPIC_API_KEY=sk-keep-me\nOMOI_WEBHOOK_SECRET=generated-by-serve\n")
    env_file.chmod(0o644)
    _, manifest, state = await _start(client)
    code = fake_github.manifest_code(manifest)

    resp = await client.get(f"/setup/callback?code={code}&state={state}")
    html = await resp.text()
    assert resp.status == 200, html
    [created] = fake_github.manifest_apps
    assert created["manifest"] == manifest
    assert f'href="{created["html_url"]}/installations/new"' in html
    assert "Restart omoi" in html
    assert created["pem"] not in html and created["webhook_secret"] not in html

    # The code was exchanged without credentials, as GitHub documents.
    [call] = fake_github.calls_matching("POST", r"^/app-manifests/[^/]+/conversions$")
    assert call.status == 201 and "Authorization" not in call.headers
    assert fake_github.violations == []

    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    text = env_file.read_text()
    assert text.startswith("# mine\nANTHROPIC_API_KEY=sk-keep-me\n")
    assert text.count("OMOI_WEBHOOK_SECRET=") == 1
    assert "BEGIN RSA PRIVATE KEY-----\\n" in text  # one line, newlines escaped
    values = dotenv_values(env_file)
    assert values["OMOI_GITHUB_APP_ID"] == str(created["id"])
    assert values["OMOI_WEBHOOK_SECRET"] == created["webhook_secret"]
    assert values["ANTHROPIC_API_KEY"] == "sk-keep-me"
    # The settings class reads the key back into a PEM that loads.
    loaded = Settings(_env_file=env_file)
    assert loaded.github_app_id == str(created["id"]) and loaded.has_app_credentials()
    load_pem_private_key(loaded.private_key_pem().encode(), password=None)

    # Setup is over: every setup route is gone, and the state cannot be replayed.
    for path in ("/", "/setup", f"/setup/callback?code={code}&state={state}"):
        assert (await client.get(path)).status == 404, path
    assert len(fake_github.manifest_apps) == 1


async def test_callback_with_unknown_or_reused_state_is_refused(client, fake_github, tmp_path):
    _, manifest, state = await _start(client)
    code = fake_github.manifest_code(manifest)
    for bad in ("", "forged", state + "x"):
        resp = await client.get(f"/setup/callback?code={code}&state={bad}")
        assert resp.status == 403
    assert fake_github.calls_matching("POST", "conversions") == []
    assert not (tmp_path / ".env").exists()

    # A code GitHub does not know: the state is spent, nothing is written, try again from /setup.
    resp = await client.get(f"/setup/callback?code=nosuchcode&state={state}")
    assert resp.status == 502
    assert (await client.get(f"/setup/callback?code={code}&state={state}")).status == 403
    assert not (tmp_path / ".env").exists()
    assert (await client.get("/setup")).status == 200  # still not set up


async def test_setup_routes_are_404_with_credentials_or_when_not_enabled(setup_settings, aiohttp_client, rsa_keypair):
    with_app = setup_settings.model_copy(update={"github_app_id": "1", "github_private_key": SecretStr(rsa_keypair[0])})
    client = await aiohttp_client(create_app(with_app, setup=True))
    for path in ("/", "/setup", "/setup/callback?code=a&state=b"):
        assert (await client.get(path)).status == 404
    plain = await aiohttp_client(create_app(setup_settings))  # `web` without --setup
    assert (await plain.get("/setup")).status == 404


# ---------------------------------------------------------------------------
# A person in a real browser, against the real `serve` process
# ---------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_register_the_app_in_a_browser(tmp_path, fake_github, omoi_world):
    require_service(browser_available(), "playwright with Debian's chromium")
    from playwright.sync_api import sync_playwright

    procs = omoi_world(github=fake_github, extra_env={"OMOI_GITHUB_WEB_URL": fake_github.url}, start=False,
                       without=("OMOI_WEBHOOK_SECRET", "OMOI_GITHUB_APP_ID", "OMOI_GITHUB_PRIVATE_KEY",
                                "OMOI_GITHUB_PRIVATE_KEY_PATH"))  # a first start: nothing configured
    base = procs.url
    procs.env["OMOI_PUBLIC_URL"] = base
    procs.start("web", "serve")
    procs.wait_healthy(60)
    env_file = tmp_path / ".env"
    assert "OMOI_WEBHOOK_SECRET=" in env_file.read_text()  # serve generated one

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            resp = page.goto(base + "/")
            assert resp.status == 200
            assert page.title() == "Set up omoi"
            button = page.get_by_role("button", name="Register GitHub App")
            assert button.is_visible()
            assert page.locator("text=" + f"{base}/webhooks/github").count() == 1
            page.screenshot(path=str(ARTIFACTS / "setup-start.png"), full_page=True)

            button.click()  # POST manifest -> GitHub stand-in -> redirect to /setup/callback
            page.wait_for_url(f"{base}/setup/callback?**", timeout=20_000)
            page.wait_for_selector("#install", timeout=20_000)
            assert page.locator("h1").inner_text() == "GitHub App registered"
            [created] = fake_github.manifest_apps
            assert page.get_attribute("#install", "href") == f"{created['html_url']}/installations/new"
            body = page.inner_text("body")
            assert "Restart omoi" in body and str(created["id"]) in body
            assert "private key and webhook secret were saved to" in " ".join(body.split())
            page.screenshot(path=str(ARTIFACTS / "setup.png"), full_page=True)

            assert page.goto(base + "/setup").status == 404  # switched off at once
        finally:
            browser.close()

    assert created["manifest"]["hook_attributes"]["url"] == f"{base}/webhooks/github"
    assert created["manifest"]["redirect_url"] == f"{base}/setup/callback"
    assert fake_github.violations == []
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dotenv_values(env_file)
    assert values["OMOI_GITHUB_APP_ID"] == str(created["id"])
    assert values["OMOI_WEBHOOK_SECRET"] == created["webhook_secret"]
    assert env_file.read_text().count("OMOI_WEBHOOK_SECRET=") == 1

    # "Restart omoi": the new process reads .env, accepts GitHub's new secret, offers no setup.
    procs.stop("web")
    procs.start("web", "serve")
    procs.wait_healthy(60)
    assert _get(base + "/setup")[0] == 404
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
    sig = "sha256=" + hmac.new(created["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(base + "/webhooks/github", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "ping", "X-GitHub-Delivery": "after-setup",
        "X-Hub-Signature-256": sig})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    wait_for(lambda: "web_listening" in procs.log_text("web"), 10, message="web log")
    assert created["pem"].splitlines()[1] not in procs.log_text("web")
