"""What people do in GitHub's UI that omoi only hears about by webhook: merge or close a pull request,
close, reopen or edit an issue, remove a label. Each changes the stand-in's state under its lock (so
omoi's next GET sees it) and returns the JSON the webhook carries; tests/support/lifecycle.py sends it.
"""

from __future__ import annotations

import copy
from typing import Any

from ..common import now_iso
from .pulls import pull_json


def merge_pull_request(fake, full_name: str, number: int, *, user: str = "alice") -> dict[str, Any]:
    """A person merges an open pull request: it is closed and merged (the base branch is not moved:
    omoi never reads it after a merge). Returns the pull request JSON of the `closed` event."""
    st = fake.state
    with st.lock:
        repo = st.repo(full_name)
        pr, issue = repo.pulls[number], repo.issues[number].data
        if issue["state"] != "open" or pr.merged_at:
            raise ValueError(f"#{number} is not open")
        ts = now_iso()
        pr.merged_by, pr.merged_at = user, ts
        issue.update(state="closed", closed_at=ts, updated_at=ts)
        issue["pull_request"]["merged_at"] = ts
        return copy.deepcopy(pull_json(st, repo, pr))


def set_pull_request_state(fake, full_name: str, number: int, state: str) -> dict[str, Any]:
    """A person closes (or reopens) a pull request without merging it; its JSON afterwards."""
    st = fake.state
    with st.lock:
        repo = st.repo(full_name)
        pr, issue = repo.pulls[number], repo.issues[number].data
        if pr.merged_at:
            raise ValueError(f"#{number} is merged")
        issue.update(state=state, closed_at=now_iso() if state == "closed" else None, updated_at=now_iso())
        return copy.deepcopy(pull_json(st, repo, pr))


def set_issue_state(fake, full_name: str, number: int, state: str, *, reason: str | None = None) -> dict[str, Any]:
    """A person closes or reopens an issue; its JSON afterwards."""
    st = fake.state
    with st.lock:
        issue = st.repo(full_name).issues[number].data
        issue.update(state=state, state_reason=reason if state == "closed" else ("reopened" if reason else None),
                     closed_at=now_iso() if state == "closed" else None, updated_at=now_iso())
        return copy.deepcopy(issue)


def edit_issue(fake, full_name: str, number: int, *, body: str | None = None,
               title: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A person edits an issue's body and/or title: (its JSON afterwards, the event's `changes`)."""
    st = fake.state
    with st.lock:
        issue = st.repo(full_name).issues[number].data
        changes: dict[str, Any] = {}
        if body is not None and body != issue["body"]:
            changes["body"] = {"from": issue["body"] or ""}
            issue["body"] = body
        if title is not None and title != issue["title"]:
            changes["title"] = {"from": issue["title"]}
            issue["title"] = title
        issue["updated_at"] = now_iso()
        return copy.deepcopy(issue), changes


def remove_label(fake, full_name: str, number: int, name: str) -> dict[str, Any]:
    """A person removes a label from an issue; the issue's JSON afterwards."""
    st = fake.state
    with st.lock:
        issue = st.repo(full_name).issues[number].data
        issue["labels"] = [lbl for lbl in issue["labels"] if lbl["name"].lower() != name.lower()]
        return copy.deepcopy(issue)


def add_label(fake, full_name: str, number: int, name: str) -> dict[str, Any]:
    """A person adds a label to an issue; the issue's JSON afterwards."""
    st = fake.state
    with st.lock:
        repo = st.repo(full_name)
        issue = repo.issues[number].data
        if name.lower() not in {lbl["name"].lower() for lbl in issue["labels"]}:
            issue["labels"].append(st.label_json(repo, name))
        return copy.deepcopy(issue)
