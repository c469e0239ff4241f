"""REST: the GitHub App manifest flow's code exchange (``POST /app-manifests/{code}/conversions``)
and the checks GitHub makes on a manifest."""

from __future__ import annotations

import copy
import re
import secrets
import time
from typing import Any

from ...webhooks import node_id
from ..common import DOCS, now_iso
from ..routing import AUTH_NONE, ApiError, Reply, RequestContext, route


_MANIFEST_DOCS = f"{DOCS}/apps/apps#create-a-github-app-from-a-manifest"
# Events GitHub refuses in a manifest's default_events: every App receives them anyway.
_IMPLICIT_APP_EVENTS = {"installation", "installation_repositories", "github_app_authorization"}


def manifest_problems(manifest: Any) -> list[str]:
    """What GitHub's "new App from manifest" page would refuse (a subset of its checks)."""
    if not isinstance(manifest, dict):
        return ["manifest must be a JSON object"]
    problems = []
    if not isinstance(manifest.get("url"), str) or not re.match(r"https?://", manifest.get("url") or ""):
        problems.append("url is required and must be an http(s) URL")
    hook = manifest.get("hook_attributes")
    if hook is not None:
        if not isinstance(hook, dict) or not re.match(r"https?://", str(hook.get("url") or "")):
            problems.append("hook_attributes.url must be an http(s) URL")
    if "redirect_url" in manifest and not re.match(r"https?://", str(manifest.get("redirect_url") or "")):
        problems.append("redirect_url must be an http(s) URL")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or any(not isinstance(e, str) for e in events):
        problems.append("default_events must be a list of event names")
    elif bad := sorted(set(events) & _IMPLICIT_APP_EVENTS):
        problems.append(f"default_events cannot include {', '.join(bad)}")
    perms = manifest.get("default_permissions", {})
    if not isinstance(perms, dict) or any(v not in ("read", "write", "admin") for v in perms.values()):
        problems.append("default_permissions values must be read, write or admin")
    if not isinstance(manifest.get("name", ""), str) or len(manifest.get("name", "")) > 34:
        problems.append("name must be a string of at most 34 characters")
    return problems


def _generate_app_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # GitHub hands out PKCS#1 ("BEGIN RSA PRIVATE KEY") keys.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@route("POST", "/app-manifests/{code}/conversions", auth=AUTH_NONE)
def create_app_from_manifest(ctx: RequestContext) -> Reply:
    st = ctx.state
    entry = st.manifest_codes.pop(ctx.params["code"], None)  # codes are single-use
    if entry is None or entry["expires_at"] < time.time():
        raise ApiError(404, "Not Found", docs=_MANIFEST_DOCS)
    manifest, org = entry["manifest"], entry["org"]
    app_id = st.next_id()
    name = manifest.get("name") or "app"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
    hook = manifest.get("hook_attributes") or {}
    data = {
        "id": app_id,
        "slug": slug,
        "node_id": node_id("Integration", app_id),
        "client_id": f"Iv1.{secrets.token_hex(8)}",
        "owner": st.user(org, "Organization") if org else st.user(entry["user"]),
        "name": name,
        "description": manifest.get("description"),
        "external_url": manifest["url"],
        "html_url": f"{st.base_url}/apps/{slug}",
        "created_at": now_iso(),
        "updated_at": now_iso(),
        "permissions": dict(manifest.get("default_permissions") or {}),
        "events": list(manifest.get("default_events") or []),
        "installations_count": 0,
        "client_secret": secrets.token_hex(20),
        "webhook_secret": secrets.token_hex(20) if hook.get("url") else None,
        "pem": _generate_app_pem(),
    }
    st.manifest_apps.append({**copy.deepcopy(data), "manifest": copy.deepcopy(manifest), "org": org})
    return Reply(201, data)
