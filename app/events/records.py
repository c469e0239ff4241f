"""Keep installations and repositories in the database current from any payload."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Installation, Repository, WebhookDelivery
from app.db.session import session_scope
from app.timeutil import as_utc


def upsert_installation(s: Session, inst: dict, **changes) -> Installation:
    row = s.get(Installation, inst["id"])
    if row is None:
        row = Installation(id=inst["id"])
        s.add(row)
    account = inst.get("account") or {}
    if account:
        row.account_login = account.get("login", row.account_login or "")
        row.account_type = account.get("type", row.account_type or "")
    for key, value in changes.items():
        setattr(row, key, value)
    return row


def upsert_repository(s: Session, repo: dict, installation_id: int | None, removed: bool = False) -> Repository:
    row = s.get(Repository, repo["id"])
    if row is None:
        row = Repository(id=repo["id"], full_name=repo["full_name"])
        s.add(row)
    row.full_name = repo["full_name"]
    row.installation_id = installation_id
    row.removed = removed
    if repo.get("default_branch"):
        row.default_branch = repo["default_branch"]
    return row


def remember(s: Session, payload: dict) -> None:
    """Record the installation and repository a payload names, if any."""
    # Only well-formed objects: a signed but malformed payload must not raise here, where it
    # would roll back the attempt count and leave the delivery for the sweep forever.
    inst = payload.get("installation")
    if not (isinstance(inst, dict) and _is_id(inst.get("id"))):
        inst = None
    elif _account_ok(inst.get("account")):
        upsert_installation(s, inst)
        s.flush()
    repo = payload.get("repository")
    if isinstance(repo, dict) and _is_id(repo.get("id")) and _is_name(repo.get("full_name")) \
            and (repo.get("default_branch") is None or _is_name(repo.get("default_branch"))):
        upsert_repository(s, repo, inst.get("id") if inst else None)


def _is_id(value) -> bool:
    return type(value) is int and 0 < value < 2**63


def _is_name(value, size: int = 255) -> bool:
    return isinstance(value, str) and 0 < len(value) <= size and "\x00" not in value


def _account_ok(account) -> bool:
    return account is None or (isinstance(account, dict) and all(
        account.get(k) is None or _is_name(account.get(k), size) for k, size in (("login", 255), ("type", 32))))


def delivery_received_at(settings, delivery_id: str) -> datetime | None:
    """When omoi's web process received a delivery (its own clock, like every row it writes)."""
    with session_scope(settings.database_url) as s:
        at = s.scalars(select(WebhookDelivery.received_at).where(WebhookDelivery.delivery_id == delivery_id)).first()
        return as_utc(at) if at else None
