"""FakeGitHub, the facade tests use: construction and lifecycle, seeding (installations,
repositories, permissions, issues, pull requests, review threads) and inspection (test thread).

Serving requests, git over HTTP, the manifest pages and webhook deliveries come from the mixins
in server.py, git_http.py, manifest_flow.py and deliveries.py.
"""

from __future__ import annotations

import copy
import shutil
import socket
from typing import Any

from aiohttp import web

from .._server import ThreadedServer
from ..git_backend import BareRepo
from ..openapi import OpenAPIValidator
from ..webhooks import stable_id
from .common import DEFAULT_INSTALLATION_PERMISSIONS, PERMISSION_LEVELS, graphql_id, now_iso
from .deliveries import HookDeliveryLog
from .git_http import GitSmartHttp
from .manifest_flow import ManifestFlow
from .models import Installation, Issue, Repo
from .rest.comments import _new_issue_comment
from .rest.issues import _issue_data
from .rest.pulls import _pr_head_sha, open_pull_request, pull_json
from .rest.review_comments import add_review_comment, thread_outdated
from .server import RequestHandling
from .state import GitHubState
from .traffic import Call, _Fault


class FakeGitHub(RequestHandling, GitSmartHttp, ManifestFlow, HookDeliveryLog):
    """An in-memory GitHub API on ``127.0.0.1:<random port>``, served from a background thread."""

    def __init__(self, *, app_id: int = 123, app_slug: str = "omoi-test", public_key_pem: str | bytes | None = None,
                 validate: bool = True, host: str = "127.0.0.1") -> None:
        # Bind now so ``url`` is known before start() (state JSON embeds it).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.state = GitHubState(app_id=app_id, app_slug=app_slug, public_key_pem=public_key_pem, base_url=self.url)
        self.validator: OpenAPIValidator | None = OpenAPIValidator() if validate else None
        self._calls: list[Call] = []
        self._violations: list[str] = self.state.violations  # handlers append through the state
        self._faults: list[_Fault] = []
        self._server = ThreadedServer(self._sock, self._build_app, "FakeGitHub")

    # -- lifecycle ----------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def start(self) -> "FakeGitHub":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        shutil.rmtree(self.state.git_root, ignore_errors=True)  # its repositories go with it

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding (test thread) ------------------------------------------------

    def add_installation(self, installation_id: int, account_login: str, *,
                         permissions: dict[str, str] | None = None) -> None:
        with self.state.lock:
            self.state.installations[installation_id] = Installation(
                installation_id, account_login, dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS))

    def add_repo(self, full_name: str, *, installation_id: int, default_branch: str = "main",
                 files: dict[str, str | bytes] | None = None, private: bool = False,
                 protected_branches: tuple[str, ...] | list[str] = ()) -> None:
        """A repository backed by a bare git repo whose default branch has one commit with ``files``.

        ``protected_branches`` refuse force pushes and deletions (over git and
        the refs API), whatever ``reject_force_push`` says.
        """
        st = self.state
        with st.lock:
            if installation_id not in st.installations:
                raise KeyError(f"unknown installation {installation_id}; call add_installation first")
            owner, name = full_name.split("/", 1)
            path = st.git_root / "repos" / owner.lower() / f"{name.lower()}.git"
            if path.exists():
                shutil.rmtree(path)
            git = BareRepo.create(path, st.git_root, default_branch=default_branch,
                                  deny_non_fast_forwards=st.reject_force_push)
            git.install_protection_hook()
            git.commit_files(default_branch, {p.strip("/"): (c.encode() if isinstance(c, str) else c)
                                              for p, c in (files or {}).items()},
                             "Initial commit", author=("octo", "octo@example.com"), parent=None)
            repo = Repo(
                full_name=full_name,
                id=stable_id("repo", full_name),  # same id the webhook payload builders use
                installation_id=installation_id,
                default_branch=default_branch,
                git=git,
                private=private,
                created_at=now_iso(),
            )
            st.repos[full_name.lower()] = repo
            for branch in protected_branches:
                self.protect_branch(full_name, branch)

    def protect_branch(self, full_name: str, branch: str) -> None:
        """Like a branch protection rule: no force pushes, no deletion (git pushes and the refs API)."""
        with self.state.lock:
            repo = self.state.repo(full_name)
            repo.protected_branches.add(branch)
            (repo.git.path / "protected-refs").write_text(
                "".join(f"refs/heads/{b}\n" for b in sorted(repo.protected_branches)))

    @property
    def reject_force_push(self) -> bool:
        """True (the default): every repo refuses non-fast-forward pushes (receive.denyNonFastForwards)."""
        return self.state.reject_force_push

    @reject_force_push.setter
    def reject_force_push(self, value: bool) -> None:
        with self.state.lock:
            self.state.reject_force_push = bool(value)
            for repo in self.state.repos.values():
                repo.git.set_deny_non_fast_forwards(bool(value))

    def set_permission(self, full_name: str, login: str, level: str) -> None:
        if level not in PERMISSION_LEVELS:
            raise ValueError(f"level must be one of {PERMISSION_LEVELS}")
        with self.state.lock:
            self.state.repo(full_name).permissions[login.lower()] = level

    def add_issue(self, full_name: str, number: int, *, title: str = "An issue", body: str | None = "",
                  user: str = "octocat", labels: list[str] | tuple[str, ...] = (), state: str = "open") -> dict[str, Any]:
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            if number in repo.pulls:
                raise ValueError(f"#{number} is a pull request (issues and pull requests share numbers)")
            data = _issue_data(st, repo, number, title=title, body=body, user=user, labels=labels, state=state)
            repo.issues[number] = Issue(data)
            return copy.deepcopy(data)

    # -- inspection (test thread) ----------------------------------------------

    def add_issue_comment(self, full_name: str, number: int, *, body: str, user: str) -> dict[str, Any]:
        """A comment written by a person (as if through GitHub's UI); returns its JSON."""
        with self.state.lock:
            repo = self.state.repo(full_name)
            return copy.deepcopy(_new_issue_comment(self.state, repo, repo.issues[number], body, user))

    def issue(self, full_name: str, number: int) -> dict[str, Any]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).issues[number].data)

    def issue_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self.state.lock:
            repo = self.state.repo(full_name)
            return copy.deepcopy([repo.comments[c] for c in repo.issues[number].comment_ids])

    def reactions_on_issue(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).issues[number].reactions)

    def reactions_on_comment(self, full_name: str, comment_id: int) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).comment_reactions.get(comment_id, []))

    def check_runs(self, full_name: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(list(self.state.repo(full_name).check_runs.values()))

    # -- git (test thread) ------------------------------------------------------

    def clone_url(self, full_name: str) -> str:
        """``http://127.0.0.1:PORT/owner/repo.git``; authenticate as ``x-access-token:<installation token>``."""
        with self.state.lock:
            return self.state.clone_url(self.state.repo(full_name))

    def _git(self, full_name: str) -> BareRepo:
        with self.state.lock:
            return self.state.repo(full_name).git

    def git(self, full_name: str, *args: str) -> str:
        """Run ``git <args>`` in the repo's bare repository and return stdout (raises GitError on failure)."""
        return self._git(full_name).git(*args)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return self._git(full_name).branch_sha(branch)

    def branches(self, full_name: str) -> dict[str, str]:
        """branch name -> head sha."""
        return self._git(full_name).branches()

    def commits(self, full_name: str, branch: str) -> list[dict[str, Any]]:
        """The branch's history, newest first: ``sha, message, author ("name <email>"), committer, parents,
        files`` (paths changed relative to the first parent, sorted)."""
        git = self._git(full_name)
        head = git.branch_sha(branch)
        if head is None:
            raise KeyError(f"{full_name} has no branch {branch!r}")
        out = []
        for sha in git.rev_list(head):
            c = git.commit(sha)
            out.append({
                "sha": sha,
                "message": c.message,
                "author": f"{c.author_name} <{c.author_email}>",
                "committer": f"{c.committer_name} <{c.committer_email}>",
                "parents": list(c.parents),
                "files": sorted(f.filename for f in git.diff(c.parents[0] if c.parents else None, sha)),
            })
        return out

    def file_at(self, full_name: str, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref`` (branch, tag or sha), or None if the file or ref does not exist."""
        data = self._git(full_name).read_file(ref, path)
        return None if data is None else data.decode("utf-8", "replace")

    def push_human_commit(self, full_name: str, branch: str, files: dict[str, str | bytes | None], message: str, *,
                          author: tuple[str, str] = ("Alice", "alice@example.com")) -> str:
        """Simulate a person pushing one commit to ``branch`` (created from the default branch if missing).

        ``files`` maps path -> new content (None deletes). Returns the new sha.
        Not recorded in ``pushes`` (that list is what clients pushed over HTTP).
        """
        git = self._git(full_name)
        with self.state.lock:
            default = self.state.repo(full_name).default_branch
        parent = git.branch_sha(branch) or git.branch_sha(default)
        changes = {p: (c.encode() if isinstance(c, str) else c) for p, c in files.items()}
        return git.commit_files(branch, changes, message, author=author, parent=parent)

    @property
    def pushes(self) -> list[tuple[str, str, str, str]]:
        """Ref updates received over git smart HTTP: ``(full_name, ref, old_sha, new_sha)`` in order."""
        with self.state.lock:
            return list(self.state.pushes)

    # -- pull requests and review threads (test thread) ----------------------------

    def add_pull_request(self, full_name: str, *, head: str, base: str | None = None, title: str = "A change",
                         body: str | None = "", user: str = "octocat", draft: bool = False) -> dict[str, Any]:
        """A pull request opened by a person (same checks as POST /pulls; raises ApiError)."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = open_pull_request(st, repo, head=head, base=base or repo.default_branch, title=title, body=body,
                                   user=user, draft=draft)
            return copy.deepcopy(pull_json(st, repo, pr))

    def pull_requests(self, full_name: str) -> list[dict[str, Any]]:
        """Every pull request (any state) as GitHub's ``pull-request`` JSON, by number."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy([pull_json(st, repo, repo.pulls[n]) for n in sorted(repo.pulls)])

    def pull_request(self, full_name: str, number: int) -> dict[str, Any]:
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy(pull_json(st, repo, repo.pulls[number]))

    def add_review_thread(self, full_name: str, pr_number: int, *, path: str, line: int, body: str,
                          user: str = "alice", diff_hunk: str | None = None, side: str = "RIGHT",
                          commit_id: str | None = None) -> dict[str, Any]:
        """A person's review comment on ``path:line`` at the PR head (the root of a new thread).

        Returns the REST ``pull-request-review-comment`` JSON; ``diff_hunk``
        defaults to a hunk ending at ``line`` built from the file.
        """
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = repo.pulls[pr_number]
            commit_id = commit_id or _pr_head_sha(repo, pr)
            if diff_hunk is None:
                text = (repo.git.read_file(commit_id, path) or b"").decode("utf-8", "replace").splitlines()
                start = max(1, line - 3)
                shown = text[start - 1 : line]
                diff_hunk = f"@@ -{start},{len(shown)} +{start},{len(shown)} @@\n" + "\n".join(" " + t for t in shown)
            c = add_review_comment(st, repo, pr, body=body, user=user, path=path, line=line, side=side,
                                   diff_hunk=diff_hunk, commit_id=commit_id)
            return copy.deepcopy(c)

    def add_review_reply(self, full_name: str, pr_number: int, comment_id: int, *, body: str,
                         user: str = "alice") -> dict[str, Any]:
        """A person's reply in the thread of review comment ``comment_id``."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy(add_review_comment(st, repo, repo.pulls[pr_number], body=body, user=user,
                                                    reply_to=comment_id))

    def review_threads(self, full_name: str, pr_number: int) -> list[dict[str, Any]]:
        """Threads of a PR: ``id`` (GraphQL node id), ``path, line, side, is_resolved, resolved_by,
        is_outdated, comments`` (REST review-comment JSON, root first)."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = repo.pulls[pr_number]
            return copy.deepcopy([{
                "id": graphql_id("PRRT", t.id),
                "path": t.path,
                "line": t.line,
                "side": t.side,
                "is_resolved": t.resolved,
                "resolved_by": t.resolved_by,
                "is_outdated": thread_outdated(repo, pr, t),
                "comments": [repo.review_comments[c] for c in t.comment_ids],
            } for t in repo.threads.values() if t.pr_number == pr_number])

    @property
    def tokens_issued(self) -> dict[int, int]:
        with self.state.lock:
            return dict(self.state.tokens_issued)

    def expire_tokens(self) -> None:
        """Make every issued installation token expired (to test refresh)."""
        with self.state.lock:
            for t in self.state.tokens.values():
                t.expires_at = 0
