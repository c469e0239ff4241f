"""Keep installations and repositories in the database current from any payload."""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import Installation, Repository


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
    inst = payload.get("installation")
    if inst and "id" in inst:
        upsert_installation(s, inst)
        s.flush()
    repo = payload.get("repository")
    if repo and "id" in repo and "full_name" in repo:
        upsert_repository(s, repo, inst.get("id") if inst else None)
