"""Webhook deliveries for tests: real example payloads, GitHub's signing, and a sender.

Payloads come from the npm package ``@octokit/webhooks-examples`` (pinned in
``tests/fakes/package.json``), which collects payloads captured from real
GitHub deliveries. Helpers below start from those real payloads and rewrite only
the fields a test cares about, so everything else keeps GitHub's real shape.

Standard library only: usable from sync tests, benchmarks and subprocesses
without an event loop.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

FAKES_DIR = Path(__file__).resolve().parent
EXAMPLES_PATH = FAKES_DIR / "node_modules" / "@octokit" / "webhooks-examples" / "api.github.com" / "index.json"
GITHUB_API_URL = "https://api.github.com"
HOOK_ID = "123456789"
APP_ID_DEFAULT = "123"

_examples_cache: list[dict[str, Any]] | None = None
_examples_lock = threading.Lock()


# --------------------------------------------------------------------------
# Deterministic identifiers shared with the fake API (tests/fakes/github/),
# so a repository or user has the same id in a webhook and in API responses.
# --------------------------------------------------------------------------


def stable_id(kind: str, key: str) -> int:
    """A stable positive id for ``key`` (e.g. a login or "owner/repo"), per kind."""
    return 10_000_000 + zlib.crc32(f"{kind}:{key.lower()}".encode()) % 900_000_000


def node_id(type_name: str, ident: int) -> str:
    """GitHub's legacy global node id: base64("<len>:<Type><id>")."""
    return base64.b64encode(f"{len(type_name):03d}:{type_name}{ident}".encode()).decode()


def user_json(login: str, *, user_type: str = "User", api_url: str = GITHUB_API_URL) -> dict[str, Any]:
    """A ``simple-user`` object for ``login`` (``user_type`` "User", "Bot" or "Organization")."""
    uid = stable_id("user", login)
    u = f"{api_url}/users/{login}"
    return {
        "login": login,
        "id": uid,
        "node_id": node_id("Bot" if user_type == "Bot" else "User", uid),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": (
            f"https://github.com/apps/{login.removesuffix('[bot]')}" if user_type == "Bot" else f"https://github.com/{login}"
        ),
        "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}",
        "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events",
        "type": user_type,
        "user_view_type": "public",
        "site_admin": False,
    }


# --------------------------------------------------------------------------
# Examples, signing, delivery
# --------------------------------------------------------------------------


def _load_index() -> list[dict[str, Any]]:
    global _examples_cache
    if _examples_cache is None:
        with _examples_lock:
            if _examples_cache is None:
                if not EXAMPLES_PATH.exists():
                    raise FileNotFoundError(f"{EXAMPLES_PATH} is missing; run `npm install` in {FAKES_DIR}")
                with EXAMPLES_PATH.open("rb") as fh:
                    _examples_cache = json.load(fh)
    return _examples_cache


def load_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every ``(event name, payload)`` in the examples index (329 for 7.6.1).

    Payloads are deep copies, so callers may mutate them.
    """
    return [(event["name"], copy.deepcopy(p)) for event in _load_index() for p in event["examples"]]


def example(event: str, action: str | None = None, *, index: int = 0) -> dict[str, Any]:
    """A deep copy of the ``index``-th example of ``event`` (with ``action``, if given)."""
    for ev in _load_index():
        if ev["name"] == event:
            matches = [p for p in ev["examples"] if action is None or p.get("action") == action]
            if len(matches) > index:
                return copy.deepcopy(matches[index])
            break
    raise KeyError(f"no example #{index} for {event}.{action}")


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends: HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _to_bytes(payload_or_bytes: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(payload_or_bytes, bytes):
        return payload_or_bytes
    if isinstance(payload_or_bytes, str):
        return payload_or_bytes.encode()
    # GitHub sends compact JSON; the signature is over these exact bytes.
    return json.dumps(payload_or_bytes, separators=(",", ":")).encode()


def headers_for(
    event: str,
    body: bytes,
    secret: str,
    delivery_id: str | None = None,
    *,
    target_id: int | str = APP_ID_DEFAULT,
) -> dict[str, str]:
    """Headers of a GitHub App webhook delivery of ``body`` (``target_id`` is the App id)."""
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/abc123",
        "X-GitHub-Hook-ID": HOOK_ID,
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(target_id),
    }


def post_delivery(
    url: str,
    event: str,
    payload_or_bytes: dict[str, Any] | bytes | str,
    secret: str,
    delivery_id: str | None = None,
    timeout: float = 10,
) -> tuple[int, str]:
    """POST one signed delivery to ``url``; returns ``(status, response body)``.

    Non-2xx answers are returned, not raised (the caller asserts on them).
    """
    body = _to_bytes(payload_or_bytes)
    req = urllib.request.Request(url, data=body, method="POST", headers=headers_for(event, body, secret, delivery_id))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------
# Payload builders
# --------------------------------------------------------------------------


def _rewrite_api_url(payload: dict[str, Any], api_url: str | None) -> dict[str, Any]:
    """Point every api.github.com URL at ``api_url``.

    Needed because gidgethub ignores ``base_url`` for absolute URLs: an app
    that follows ``issue.comments_url`` would otherwise call the real GitHub.
    """
    if not api_url:
        return payload
    text = json.dumps(payload).replace(GITHUB_API_URL, api_url.rstrip("/"))
    return json.loads(text)


def _installation_ref(installation_id: int) -> dict[str, Any]:
    return {"id": installation_id, "node_id": node_id("IntegrationInstallation", installation_id)}


def _rewrite_repository(payload: dict[str, Any], repo_full_name: str) -> dict[str, Any]:
    """Rename the example's repository (every URL and name) to ``repo_full_name``."""
    old = payload["repository"]["full_name"]
    old_owner = payload["repository"]["owner"]["login"]
    owner, name = repo_full_name.split("/", 1)
    text = json.dumps(payload).replace(f"/{old}", f"/{repo_full_name}").replace(f":{old}", f":{repo_full_name}")
    payload = json.loads(text)
    repo = payload["repository"]
    rid = stable_id("repo", repo_full_name)
    repo.update({"id": rid, "node_id": node_id("Repository", rid), "name": name, "full_name": repo_full_name})
    if repo["owner"]["login"] == old_owner:
        repo["owner"] = user_json(owner, user_type=repo["owner"].get("type", "User"))
    if "organization" in payload:
        # The org in the example is another account; keep it only if it is the owner.
        if payload["organization"].get("login") != owner:
            del payload["organization"]
    return payload


def _rewrite_issue(payload: dict[str, Any], repo_full_name: str, issue_number: int) -> None:
    issue = payload["issue"]
    base = f"{GITHUB_API_URL}/repos/{repo_full_name}/issues/{issue_number}"
    iid = stable_id("issue", f"{repo_full_name}#{issue_number}")
    issue.update(
        {
            "id": iid,
            "node_id": node_id("Issue", iid),
            "number": issue_number,
            "url": base,
            "repository_url": f"{GITHUB_API_URL}/repos/{repo_full_name}",
            "labels_url": f"{base}/labels{{/name}}",
            "comments_url": f"{base}/comments",
            "events_url": f"{base}/events",
            "html_url": f"https://github.com/{repo_full_name}/issues/{issue_number}",
        }
    )
    if "timeline_url" in issue:
        issue["timeline_url"] = f"{base}/timeline"
    if "reactions" in issue:
        issue["reactions"]["url"] = f"{base}/reactions"


def _label_json(repo_full_name: str, name: str) -> dict[str, Any]:
    lid = stable_id("label", f"{repo_full_name}:{name}")
    return {
        "id": lid,
        "node_id": node_id("Label", lid),
        "url": f"{GITHUB_API_URL}/repos/{repo_full_name}/labels/{urllib.request.quote(name, safe='')}",
        "name": name,
        "color": "ededed",
        "default": False,
        "description": None,
    }


def issues_labeled_payload(
    *,
    installation_id: int,
    repo_full_name: str,
    issue_number: int,
    label: str,
    sender_login: str,
    sender_type: str = "User",
    api_url: str | None = None,
    title: str | None = None,
    body: str | None = None,
    issue_user: str | None = None,
) -> dict[str, Any]:
    """An App-delivered ``issues``/``labeled`` payload (the examples have no ``installation``).

    The issue is authored by ``issue_user`` (default: the sender) and carries
    ``label`` in ``issue.labels``; ``payload["label"]`` is the label just added.
    """
    payload = _rewrite_repository(example("issues", "labeled"), repo_full_name)
    _rewrite_issue(payload, repo_full_name, issue_number)
    issue = payload["issue"]
    if title is not None:
        issue["title"] = title
    if body is not None:
        issue["body"] = body
    issue["user"] = user_json(issue_user or sender_login, user_type="User" if issue_user else sender_type)
    # Drop example-specific extras that would point at other accounts.
    issue["assignee"], issue["assignees"], issue["milestone"] = None, [], None
    label_obj = _label_json(repo_full_name, label)
    issue["labels"] = [label_obj]
    payload["label"] = copy.deepcopy(label_obj)
    payload["sender"] = user_json(sender_login, user_type=sender_type)
    payload["installation"] = _installation_ref(installation_id)
    return _rewrite_api_url(payload, api_url)


def issue_comment_created_payload(
    *,
    installation_id: int,
    repo_full_name: str,
    issue_number: int,
    body: str,
    sender_login: str,
    sender_type: str = "User",
    comment_id: int | None = None,
    on_pull_request: bool = False,
    api_url: str | None = None,
    author_association: str = "COLLABORATOR",
    issue_labels: list[str] | tuple[str, ...] = (),
    issue_title: str | None = None,
) -> dict[str, Any]:
    """An ``issue_comment``/``created`` payload; with ``on_pull_request`` the issue is a PR.

    GitHub delivers PR conversation comments as ``issue_comment`` events whose
    ``issue`` has a ``pull_request`` key; none of the examples do, so it is added here.
    """
    # Example #2 is the one that matches GitHub's current webhook schema
    # (#0 predates ``reactions``/``active_lock_reason``; #1 is from another org).
    payload = _rewrite_repository(example("issue_comment", "created", index=2), repo_full_name)
    _rewrite_issue(payload, repo_full_name, issue_number)
    issue = payload["issue"]
    issue["assignee"], issue["assignees"], issue["milestone"] = None, [], None
    issue["labels"] = [_label_json(repo_full_name, name) for name in issue_labels]
    if issue_title is not None:
        issue["title"] = issue_title
    if on_pull_request:
        pr = f"{GITHUB_API_URL}/repos/{repo_full_name}/pulls/{issue_number}"
        issue["pull_request"] = {
            "url": pr,
            "html_url": f"https://github.com/{repo_full_name}/pull/{issue_number}",
            "diff_url": f"https://github.com/{repo_full_name}/pull/{issue_number}.diff",
            "patch_url": f"https://github.com/{repo_full_name}/pull/{issue_number}.patch",
            "merged_at": None,
        }
        issue["html_url"] = f"https://github.com/{repo_full_name}/pull/{issue_number}"
    cid = comment_id if comment_id is not None else stable_id("comment", f"{repo_full_name}#{issue_number}:{body}")
    comment = payload["comment"]
    comment.update(
        {
            "id": cid,
            "node_id": node_id("IssueComment", cid),
            "url": f"{GITHUB_API_URL}/repos/{repo_full_name}/issues/comments/{cid}",
            "html_url": f"{issue['html_url']}#issuecomment-{cid}",
            "issue_url": issue["url"],
            "body": body,
            "user": user_json(sender_login, user_type=sender_type),
            "author_association": author_association,
            "performed_via_github_app": None,
        }
    )
    if "reactions" in comment:
        comment["reactions"]["url"] = f"{comment['url']}/reactions"
    payload["sender"] = user_json(sender_login, user_type=sender_type)
    payload["installation"] = _installation_ref(installation_id)
    return _rewrite_api_url(payload, api_url)


def installation_created_payload(
    installation_id: int,
    account_login: str,
    repos: list[str] | tuple[str, ...] = (),
    *,
    app_id: int = int(APP_ID_DEFAULT),
    app_slug: str = "omoi-test",
    api_url: str | None = None,
) -> dict[str, Any]:
    """An ``installation``/``created`` payload for ``account_login`` with ``repos`` ("owner/name" or "name")."""
    payload = example("installation", "created")
    inst = payload["installation"]
    account = user_json(account_login, user_type=inst["account"].get("type", "User"))
    inst.update(
        {
            "id": installation_id,
            "account": account,
            "repository_selection": "selected",
            "access_tokens_url": f"{GITHUB_API_URL}/app/installations/{installation_id}/access_tokens",
            "html_url": f"https://github.com/settings/installations/{installation_id}",
            "app_id": app_id,
            "app_slug": app_slug,
            "target_id": account["id"],
            # The example has epoch integers; GitHub's current schema says ISO strings.
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
    )
    payload["repositories"] = []
    for r in repos:
        full = r if "/" in r else f"{account_login}/{r}"
        rid = stable_id("repo", full)
        payload["repositories"].append(
            {"id": rid, "node_id": node_id("Repository", rid), "name": full.split("/", 1)[1], "full_name": full, "private": False}
        )
    payload["sender"] = user_json(account_login)
    return _rewrite_api_url(payload, api_url)
