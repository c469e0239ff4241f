"""The records the GitHub stand-in keeps: installations, tokens, issues, pull requests, review
threads, repositories (backed by real bare git repositories) and the App's webhook deliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..git_backend import BareRepo
from .common import now_iso


@dataclass
class Installation:
    id: int
    account_login: str
    permissions: dict[str, str]


@dataclass
class Token:
    value: str
    installation_id: int
    expires_at: float


@dataclass
class Issue:
    data: dict[str, Any]  # GitHub's JSON for the issue
    comment_ids: list[int] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PullRequest:
    """What a pull request adds to its issue (title/body/state/labels live in ``Issue.data``)."""

    number: int
    id: int
    head_ref: str
    base_ref: str
    user: str
    user_type: str = "User"
    draft: bool = False
    maintainer_can_modify: bool = False
    last_head_sha: str = ""  # kept for when the head branch is deleted
    merged_by: str | None = None  # a person merged it (rest/people.py); omoi never merges
    merged_at: str | None = None
    review_comment_ids: list[int] = field(default_factory=list)


@dataclass
class ReviewThread:
    """A review thread: a root review comment and its replies (all in ``Repo.review_comments``)."""

    id: int  # GraphQL node id is derived from it
    pr_number: int
    path: str
    line: int
    side: str
    comment_ids: list[int] = field(default_factory=list)
    resolved_by: str | None = None
    outdated: bool | None = None  # None: computed from the head (line text changed or file gone)

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None


@dataclass
class Repo:
    full_name: str
    id: int
    installation_id: int
    default_branch: str
    git: BareRepo
    private: bool
    created_at: str
    permissions: dict[str, str] = field(default_factory=dict)  # login(lower) -> level
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment JSON
    comment_issue: dict[int, int] = field(default_factory=dict)  # comment id -> issue number
    comment_reactions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # name(lower) -> label JSON
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    review_comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> review comment JSON
    threads: dict[int, ReviewThread] = field(default_factory=dict)  # thread id -> thread
    comment_thread: dict[int, int] = field(default_factory=dict)  # review comment id -> thread id
    protected_branches: set[str] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    @property
    def files(self) -> dict[str, bytes]:
        """The default branch's files (read from git)."""
        return self.git.files(f"refs/heads/{self.default_branch}")

    def head_sha(self) -> str:
        """The default branch's commit sha."""
        return self.git.branch_sha(self.default_branch) or ""

    def tree_sha(self) -> str:
        """The default branch's root tree sha."""
        return self.git.resolve(f"refs/heads/{self.default_branch}", "tree") or ""

    def next_number(self) -> int:
        """Issues and pull requests share one number space."""
        return max(self.issues, default=0) + 1


@dataclass
class HookDelivery:
    """One delivery attempt as GitHub records it, plus what the fake needs to redeliver it."""

    id: int
    guid: str
    delivered_at: float
    redelivery: bool
    duration: float
    status: str  # "OK", "Invalid HTTP Response: 503", "failed to connect to host", "timed out"
    status_code: int  # the HTTP status; 0 when no HTTP answer came back
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    url: str
    secret: str
    body: bytes
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    response_body: str | None

    def item_json(self) -> dict[str, Any]:
        """``hook-delivery-item``: what the list endpoint shows."""
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": now_iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }

    def full_json(self) -> dict[str, Any]:
        """``hook-delivery``: one delivery with its request and response."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            payload = None
        return {
            **self.item_json(),
            "url": self.url,
            "request": {"headers": dict(self.request_headers),
                        "payload": payload if isinstance(payload, dict) else None},
            "response": {"headers": dict(self.response_headers), "payload": self.response_body},
        }
