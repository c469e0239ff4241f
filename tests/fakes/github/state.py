"""GitHubState: everything the GitHub stand-in knows, under one lock, and the JSON builders for
the shapes several endpoints share (users, the App, repositories, labels, reaction roll-ups)."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..webhooks import node_id, stable_id, user_json
from .common import DEFAULT_INSTALLATION_PERMISSIONS, REACTIONS, now_iso
from .models import HookDelivery, Installation, Repo, Token


class GitHubState:
    """Everything the fake knows. Guarded by ``lock`` (server thread + test thread)."""

    def __init__(self, *, app_id: int, app_slug: str, public_key_pem: str | bytes | None, base_url: str) -> None:
        self.lock = threading.RLock()
        self.app_id = app_id
        self.app_slug = app_slug
        self.public_key_pem = public_key_pem
        self.base_url = base_url
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}  # full_name.lower() -> Repo
        self.tokens: dict[str, Token] = {}
        self.tokens_issued: Counter[int] = Counter()
        self.rate_used: Counter[str] = Counter()
        self.rate_window_start = time.time()
        self._ids = itertools.count(1_000_001)
        self.created_at = now_iso()
        self.violations: list[str] = []  # FakeGitHub.violations; handlers may append
        self.git_root = Path(tempfile.mkdtemp(prefix="fakegithub-"))  # bare repos live under <root>/repos
        self.pushes: list[tuple[str, str, str, str]] = []
        self.reject_force_push = True
        # App-manifest flow: codes handed out by the /settings/apps/new page, Apps created from them.
        self.manifest_codes: dict[str, dict[str, Any]] = {}
        self.manifest_apps: list[dict[str, Any]] = []
        # The App's webhook delivery log (send_webhook, redeliveries) and the redelivery threads.
        self.hook_deliveries: list[HookDelivery] = []
        self.hook_threads: list[threading.Thread] = []

    def next_id(self) -> int:
        return next(self._ids)

    # -- lookups ------------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"unknown repo {full_name!r}; call add_repo first") from None

    # -- JSON builders (GitHub shapes; URLs point at the fake) -------------

    def user(self, login: str, user_type: str = "User") -> dict[str, Any]:
        return user_json(login, user_type=user_type, api_url=self.base_url)

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    @property
    def bot_email(self) -> str:
        """The noreply address GitHub gives the App's bot (commit author of API commits)."""
        return f"{self.app_id}+{self.bot_login}@users.noreply.github.com"

    def bot_user(self) -> dict[str, Any]:
        return self.user(self.bot_login, "Bot")

    def integration(self) -> dict[str, Any]:
        """The ``integration`` object (GET /app, ``performed_via_github_app``, check run ``app``)."""
        return {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": node_id("Integration", self.app_id),
            "client_id": f"Iv1.{self.app_id:016x}",
            "owner": self.user("omoi-owner", "Organization"),
            "name": self.app_slug,
            "description": "omoi test app",
            "external_url": "https://example.com",
            "html_url": f"https://github.com/apps/{self.app_slug}",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "permissions": dict(DEFAULT_INSTALLATION_PERMISSIONS),
            "events": ["issues", "issue_comment", "pull_request", "check_run"],
            "installations_count": len(self.installations),
        }

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url}/repos/{repo.full_name}"

    def repository_json(self, repo: Repo) -> dict[str, Any]:
        """``full-repository`` (GET /repos/{owner}/{repo})."""
        u = self.repo_url(repo)
        open_issues = sum(1 for i in repo.issues.values() if i.data["state"] == "open")
        return {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self.user(repo.owner),
            "private": repo.private,
            "html_url": f"https://github.com/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": u,
            "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{u}/assignees{{/user}}",
            "blobs_url": f"{u}/git/blobs{{/sha}}",
            "branches_url": f"{u}/branches{{/branch}}",
            "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "comments_url": f"{u}/comments{{/number}}",
            "commits_url": f"{u}/commits{{/sha}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}",
            "contents_url": f"{u}/contents/{{+path}}",
            "contributors_url": f"{u}/contributors",
            "deployments_url": f"{u}/deployments",
            "downloads_url": f"{u}/downloads",
            "events_url": f"{u}/events",
            "forks_url": f"{u}/forks",
            "git_commits_url": f"{u}/git/commits{{/sha}}",
            "git_refs_url": f"{u}/git/refs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}",
            "git_url": f"git://github.com/{repo.full_name}.git",
            "issue_comment_url": f"{u}/issues/comments{{/number}}",
            "issue_events_url": f"{u}/issues/events{{/number}}",
            "issues_url": f"{u}/issues{{/number}}",
            "keys_url": f"{u}/keys{{/key_id}}",
            "labels_url": f"{u}/labels{{/name}}",
            "languages_url": f"{u}/languages",
            "merges_url": f"{u}/merges",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}",
            "pulls_url": f"{u}/pulls{{/number}}",
            "releases_url": f"{u}/releases{{/id}}",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "stargazers_url": f"{u}/stargazers",
            "statuses_url": f"{u}/statuses/{{sha}}",
            "subscribers_url": f"{u}/subscribers",
            "subscription_url": f"{u}/subscription",
            "tags_url": f"{u}/tags",
            "teams_url": f"{u}/teams",
            "trees_url": f"{u}/git/trees{{/sha}}",
            "clone_url": self.clone_url(repo),
            "mirror_url": None,
            "hooks_url": f"{u}/hooks",
            "svn_url": f"https://github.com/{repo.full_name}",
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": self.repo_size_kb(repo),
            "default_branch": repo.default_branch,
            "open_issues_count": open_issues,
            "open_issues": open_issues,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": repo.created_at,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "allow_rebase_merge": True,
            "allow_squash_merge": True,
            "allow_merge_commit": True,
            "allow_auto_merge": False,
            "delete_branch_on_merge": False,
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "license": None,
            "network_count": 0,
            "subscribers_count": 0,
        }

    def clone_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{repo.full_name}.git"

    def repo_size_kb(self, repo: Repo) -> int:
        tree = repo.tree_sha()
        if not tree:
            return 0
        return sum(e.size or 0 for e in repo.git.tree_entries(tree)) // 1024

    def label_json(self, repo: Repo, name: str) -> dict[str, Any]:
        """The repo's label ``name``, created on first use (as GitHub does when labelling)."""
        key = name.lower()
        if key not in repo.labels:
            lid = stable_id("label", f"{repo.full_name}:{name}")  # same id as in webhook payloads
            repo.labels[key] = {
                "id": lid,
                "node_id": node_id("Label", lid),
                "url": f"{self.repo_url(repo)}/labels/{quote(name, safe='')}",
                "name": name,
                "description": None,
                "color": "ededed",
                "default": False,
            }
        return repo.labels[key]

    def reaction_rollup(self, url: str, reactions: list[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(r["content"] for r in reactions)
        return {"url": url, "total_count": len(reactions), **{c: counts.get(c, 0) for c in REACTIONS}}
