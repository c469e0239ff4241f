"""What a stored webhook delivery is: the events omoi accepts, the signature check, the stored
payload text and the columns derived from a payload.

The web process stores a delivery by these rules (app/web/webhook.py); the worker checks a row
against them again before routing it (app/intake/processing.py). Pure functions, no I/O.
"""
from __future__ import annotations

import hmac
import json

# Events omoi subscribes to (manifest.yml default_events). Others are acknowledged and dropped.
# app/events routes each of them (app/events/__init__.py checks its routers against this set).
HANDLED_EVENTS = frozenset(
    {
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "check_run",
        "check_suite",
        "push",
        "installation",
        "installation_repositories",
    }
)


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """X-Hub-Signature-256: HMAC-SHA256 of the body with the webhook secret."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.digest(secret.encode(), body, "sha256").hex()  # one-shot: OpenSSL's fast path
    return hmac.compare_digest(expected, header.strip())


def not_json(name: str):
    """`parse_constant` for json.loads: Python accepts NaN/Infinity; JSON (and PostgreSQL) do not."""
    raise ValueError(f"{name} is not JSON")


def payload_text(body: bytes, payload: dict) -> tuple[str, bool]:
    """The stored payload, and whether it is the signed body itself: it is when the body is plain
    UTF-8 JSON (it parsed, so it is valid JSON without NaN/Infinity); otherwise (UTF-16/32, a BOM,
    lone surrogates) it is the payload re-serialised with escapes, which every database accepts."""
    if json.detect_encoding(body) == "utf-8":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not text.startswith("\ufeff"):
                return text, True
    return json.dumps(payload), False


def issue_key(payload: dict) -> str | None:
    """"owner/repo#number", or None for events not about one issue or PR (installations...):
    events on one issue or pull request are handled in arrival order."""
    repo = payload.get("repository")
    target = payload.get("issue") or payload.get("pull_request")
    if not isinstance(repo, dict) or not isinstance(target, dict):
        return None
    name, number = repo.get("full_name"), target.get("number")
    if isinstance(name, str) and isinstance(number, int) and not isinstance(number, bool):
        return f"{name}#{number}"[:300]
    return None


def _column_str(value, size: int = 64) -> str | None:
    """A payload value for an indexed column: only a string that fits (the payload keeps the rest)."""
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def _bigint(value) -> int | None:
    return value if type(value) is int and -(2**63) <= value < 2**63 else None  # bools are not ids


def delivery_columns(payload: dict) -> dict:
    """The columns derived from a payload, as the web process stores them (the worker checks a
    row's against its verified body with this same function)."""
    inst = payload.get("installation")
    if not isinstance(inst, dict):  # signed but odd (a list, a number): store it, never a 500
        inst = {}
    return {
        "action": _column_str(payload.get("action")),
        "installation_id": _bigint(inst.get("id")),
        "issue_key": issue_key(payload),  # commands on one issue are processed in arrival order
    }


MAX_JSON_DEPTH = 64  # GitHub's payloads nest about 6 deep; a worker's stack must never be the limit


def too_deep(body: bytes, payload) -> bool:
    """Whether the parsed payload nests deeper than MAX_JSON_DEPTH. Counting brackets first keeps the
    common case (a few hundred brackets at most per level) to two C-speed scans of the body."""
    if body.count(b"{") + body.count(b"[") <= MAX_JSON_DEPTH:
        return False
    stack = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False
