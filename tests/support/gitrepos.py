"""Real git repositories for the tests: git() with no user or system configuration, a one-commit
repository, a source repository with a branch and a tag (the sandbox tests clone it), and a
dumb-HTTP git server that insists on an installation token as Basic auth."""
from __future__ import annotations

import base64
import http.server
import os
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

TOKEN = "ghs_FAKEinstallationTOKEN0123456789abcdef"  # the token AuthGitServer insists on


def git(cwd: Path, *args: str, stdin: bytes | None = None, env: dict | None = None) -> str:
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env={**base, **(env or {})})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


def git_out(cwd: Path, args: list[str]) -> str:
    """git's output as it is (not stripped; undecodable bytes replaced)."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True,
                          env={"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8", errors="replace")


def one_commit_repo(path: Path) -> Path:
    """A repository at `path` with one commit on main: `hello.py` with `greet()`."""
    path.mkdir()
    (path / "hello.py").write_text("def greet():\n    return 'hi'\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        git(path, *args)
    return path


def make_source_repo(repo: Path) -> SimpleNamespace:
    """main: 2 commits; branch `feature`: +1 commit; tag v1 on the first commit."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / "old.txt").write_text("to be deleted\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print('v2')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two")
    main = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "feature.txt").write_text("feature\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature")
    feature = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return SimpleNamespace(path=repo, first=first, main=main, feature=feature)


class AuthGitServer:
    """`source` as `repo.git` over dumb HTTP from `served`, answering only Basic auth with `token`
    (401 otherwise); `seen` keeps every Authorization header it got."""

    def __init__(self, source: Path, served: Path, token: str = TOKEN) -> None:
        served.mkdir()
        bare = served / "repo.git"
        git(served.parent, "clone", "-q", "--bare", str(source), str(bare))
        git(bare, "update-server-info")
        expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(served), **kw)

            def do_GET(self):  # noqa: N802
                auth = self.headers.get("Authorization", "")
                seen.append(auth)
                if auth != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def sandboxes_left(base: Path) -> list[Path]:
    return list(base.iterdir()) if base.exists() else []
