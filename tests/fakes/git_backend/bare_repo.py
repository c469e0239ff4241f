"""BareRepo: one fake repository as a real bare git repository on disk, with the plumbing
FakeGitHub needs (refs, objects, commits written without a work tree, GitHub-style diffs)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
from pathlib import Path

from .plumbing import (DEFAULT_AUTHOR, PROTECTION_HOOK, ZERO_SHA, CommitInfo, FileChange, GitError, TreeEntry,
                       _iso_utc, isolated_env)


class BareRepo:
    """A bare repository on disk plus the plumbing FakeGitHub needs. Thread-safe (git does the locking)."""

    def __init__(self, path: Path, home: Path) -> None:
        self.path = Path(path)
        self.home = Path(home)
        self._commit_cache: dict[str, CommitInfo] = {}
        self._tree_cache: dict[str, list[TreeEntry]] = {}
        self._cache_lock = threading.Lock()

    # -- creation -----------------------------------------------------------

    @classmethod
    def create(cls, path: Path, home: Path, *, default_branch: str, deny_non_fast_forwards: bool = True) -> "BareRepo":
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path, home)
        repo.run("init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path), cwd=path.parent)
        for key, value in (
            ("http.receivepack", "true"),
            ("http.uploadpack", "true"),
            ("uploadpack.allowFilter", "true"),
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("receive.denyNonFastForwards", "true" if deny_non_fast_forwards else "false"),
            ("receive.denyDeleteCurrent", "true"),
            ("core.logAllRefUpdates", "false"),
            ("gc.auto", "0"),
        ):
            repo.run("config", key, value)
        return repo

    def install_protection_hook(self) -> None:
        """A pre-receive hook refusing force pushes and deletions of refs listed in ``<repo>/protected-refs``.

        The messages mimic GitHub's GH006 answer for protected branches.
        """
        hook = self.path / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(PROTECTION_HOOK)
        hook.chmod(0o755)

    def set_deny_non_fast_forwards(self, deny: bool) -> None:
        self.run("config", "receive.denyNonFastForwards", "true" if deny else "false")

    # -- running git ----------------------------------------------------------

    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            check: bool = True, cwd: Path | None = None) -> bytes:
        """Run ``git <args>`` in the bare repo; returns stdout bytes (raises GitError when check)."""
        argv = ["git", *args]
        proc = subprocess.run(
            argv, cwd=str(cwd or self.path), input=input, capture_output=True,
            env=isolated_env(self.home, env), timeout=60,
        )
        if check and proc.returncode != 0:
            raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
        return proc.stdout

    def git(self, *args: str) -> str:
        """``git <args>`` as text, trailing newline stripped."""
        return self.run(*args).decode("utf-8", "replace").rstrip("\n")

    # -- refs -----------------------------------------------------------------

    def resolve(self, ref: str | None, peel: str = "commit") -> str | None:
        """Commit (or tree, with ``peel="tree"``) sha for a branch name, ``heads/x``, full ref, tag or sha."""
        if not ref or ref.startswith("-") or any(c in ref for c in "\0\n"):
            return None
        out = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{{peel}}}", check=False)
        sha = out.decode().strip()
        return sha if re.fullmatch(r"[0-9a-f]{40}", sha) else None

    def ref_sha(self, full_ref: str) -> str | None:
        """The sha a full ref (``refs/heads/main``) points at, without peeling; None if absent."""
        out = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", full_ref, check=False).decode().strip()
        return out or None

    def branch_sha(self, branch: str) -> str | None:
        return self.ref_sha(f"refs/heads/{branch}")

    def refs(self, prefix: str = "refs/") -> dict[str, str]:
        """Full ref name -> sha for every ref under ``prefix``."""
        out = self.git("for-each-ref", "--format=%(refname) %(objectname)", prefix)
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def branches(self) -> dict[str, str]:
        return {k.removeprefix("refs/heads/"): v for k, v in self.refs("refs/heads/").items()}

    def update_ref(self, full_ref: str, new: str, old: str | None = None) -> None:
        """Set ``full_ref`` to ``new``; when ``old`` is given it must still hold (ZERO_SHA: must not exist)."""
        args = ["update-ref", full_ref, new] + ([old] if old is not None else [])
        self.run(*args)

    def delete_ref(self, full_ref: str) -> None:
        self.run("update-ref", "-d", full_ref)

    def object_type(self, sha: str) -> str | None:
        out = self.run("cat-file", "-t", "--end-of-options", sha, check=False) if sha and not sha.startswith("-") else b""
        return out.decode().strip() or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        proc = subprocess.run(["git", "merge-base", "--is-ancestor", ancestor, descendant], cwd=str(self.path),
                              env=isolated_env(self.home), capture_output=True, timeout=60)
        return proc.returncode == 0

    def valid_ref_name(self, full_ref: str) -> bool:
        proc = subprocess.run(["git", "check-ref-format", full_ref], env=isolated_env(self.home),
                              capture_output=True, timeout=60)
        return proc.returncode == 0

    def merge_base(self, a: str, b: str) -> str | None:
        out = self.run("merge-base", a, b, check=False).decode().strip()
        return out or None

    def rev_list(self, include: str, exclude: str | None = None, *, reverse: bool = False) -> list[str]:
        """Commits reachable from ``include`` but not ``exclude``, newest first (oldest first with reverse)."""
        args = ["rev-list"] + (["--reverse"] if reverse else []) + [include] + ([f"^{exclude}"] if exclude else [])
        return self.git(*args).split()

    # -- objects --------------------------------------------------------------

    def commit(self, sha: str) -> CommitInfo:
        with self._cache_lock:
            hit = self._commit_cache.get(sha)
        if hit is not None:
            return hit
        fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        raw = self.run("show", "-s", f"--format={fmt}", "--end-of-options", sha).decode("utf-8", "replace")
        f = raw.split("\0", 9)
        info = CommitInfo(f[0], f[1], tuple(f[2].split()), f[3], f[4], _iso_utc(f[5]), f[6], f[7], _iso_utc(f[8]),
                          f[9].rstrip("\n"))
        with self._cache_lock:
            self._commit_cache[info.sha] = info
        return info

    def tree_entries(self, tree_sha: str) -> list[TreeEntry]:
        """Every entry of a tree, recursively (blobs *and* subtrees), sorted by path."""
        with self._cache_lock:
            hit = self._tree_cache.get(tree_sha)
        if hit is not None:
            return hit
        out = self.run("ls-tree", "-r", "-t", "-z", "--long", "--full-tree", tree_sha).decode("utf-8", "replace")
        entries = []
        for rec in out.split("\0"):
            if not rec:
                continue
            meta, path = rec.split("\t", 1)
            mode, typ, sha, size = meta.split()
            entries.append(TreeEntry(path, mode, typ, sha, None if size == "-" else int(size)))
        entries.sort(key=lambda e: e.path)
        with self._cache_lock:
            self._tree_cache[tree_sha] = entries
        return entries

    def files(self, ref: str) -> dict[str, bytes]:
        """path -> content of every blob at ``ref`` (empty dict if ref is unknown)."""
        tree = self.resolve(ref, "tree")
        if tree is None:
            return {}
        return {e.path: self.blob(e.sha) for e in self.tree_entries(tree) if e.type == "blob"}

    def blob(self, sha: str) -> bytes:
        return self.run("cat-file", "blob", sha)

    def read_file(self, ref: str, path: str) -> bytes | None:
        tree = self.resolve(ref, "tree")
        if tree is None:
            return None
        path = path.strip("/")
        for e in self.tree_entries(tree):
            if e.path == path and e.type == "blob":
                return self.blob(e.sha)
        return None

    def hash_blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    # -- writing commits ------------------------------------------------------

    def commit_files(self, branch: str, changes: dict[str, bytes | None], message: str, *,
                     author: tuple[str, str] = DEFAULT_AUTHOR, committer: tuple[str, str] | None = None,
                     parent: str | None = "HEAD_OF_BRANCH", date: str | None = None) -> str:
        """Commit ``changes`` (path -> bytes, or None to delete) on top of ``branch`` and move the branch.

        ``parent`` defaults to the branch's current head (a new root commit
        when the branch does not exist); pass an explicit sha to build on
        something else, or None for a root commit. The branch moves with a
        compare-and-swap, so a concurrent update raises GitError instead of
        being overwritten. Returns the new commit sha.
        """
        full_ref = f"refs/heads/{branch}"
        current = self.ref_sha(full_ref)
        if parent == "HEAD_OF_BRANCH":
            parent = current
        committer = committer or author
        lines = []
        for path, data in changes.items():
            path = path.strip("/")
            if data is None:
                lines.append(f"0 {ZERO_SHA}\t{path}")
            else:
                lines.append(f"100644 {self.hash_blob(data)}\t{path}")
        with tempfile.TemporaryDirectory(dir=self.home) as tmp:
            index_env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if parent:
                self.run("read-tree", parent, env=index_env)
            else:
                self.run("read-tree", "--empty", env=index_env)
            if lines:
                self.run("update-index", "--index-info", input=("\n".join(lines) + "\n").encode(), env=index_env)
            tree = self.run("write-tree", env=index_env).decode().strip()
        ident = {
            "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
            "GIT_COMMITTER_NAME": committer[0], "GIT_COMMITTER_EMAIL": committer[1],
        }
        if date:
            ident.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        args = ["commit-tree", tree] + (["-p", parent] if parent else []) + ["-F", "-"]
        sha = self.run(*args, input=message.encode(), env=ident).decode().strip()
        self.update_ref(full_ref, sha, current or ZERO_SHA)
        return sha

    # -- diffs ------------------------------------------------------------------

    def diff(self, base: str | None, head: str) -> list[FileChange]:
        """Files changed from ``base`` to ``head`` (base None: against the empty tree), GitHub style."""
        left = base or self.run("hash-object", "-t", "tree", "--stdin", input=b"").decode().strip()
        raw = self.run("diff-tree", "-r", "-z", "-M", "--raw", "--numstat", "--no-commit-id", left, head)
        # --raw records come first (":<modes> <shas> <status>\0path[\0path]"), then numstat records.
        parts = raw.decode("utf-8", "replace").split("\0")
        changes: list[tuple[str, str, str | None, str]] = []  # status, path, old path, new sha
        stats: dict[str, tuple[int, int]] = {}
        i = 0
        while i < len(parts):
            rec = parts[i]
            if rec.startswith(":"):
                meta = rec[1:].split()
                new_sha, status = meta[3], meta[4]
                if status[0] in "RC":
                    old, new = parts[i + 1], parts[i + 2]
                    changes.append((status[0], new, old, new_sha))
                    i += 3
                else:
                    changes.append((status[0], parts[i + 1], None, new_sha))
                    i += 2
            elif rec:
                add, dele, path = (rec.split("\t", 2) + ["", ""])[:3]
                if path == "":  # rename in numstat -z: "add\tdel\t\0old\0new"
                    path = parts[i + 2]
                    i += 3
                else:
                    i += 1
                stats[path] = (int(add) if add.isdigit() else 0, int(dele) if dele.isdigit() else 0)
            else:
                i += 1
        patches = self._patches(left, head)
        status_names = {"A": "added", "D": "removed", "M": "modified", "R": "renamed", "C": "copied", "T": "changed"}
        out = []
        for status, path, old, new_sha in changes:
            add, dele = stats.get(path, (0, 0))
            out.append(FileChange(path, status_names.get(status, "modified"), add, dele,
                                  None if status == "D" else new_sha, patches.get(path), old))
        return out

    def _patches(self, left: str, head: str) -> dict[str, str]:
        """path -> the hunks of its unified diff (what GitHub puts in ``patch``)."""
        text = self.run("diff", "-M", "--no-color", "--no-ext-diff", left, head).decode("utf-8", "replace")
        out: dict[str, str] = {}
        for chunk in re.split(r"^diff --git ", text, flags=re.M)[1:]:
            header, sep, hunks = chunk.partition("\n@@")
            m = re.search(r"^\+\+\+ b/(.*)$", header, re.M) or re.search(r"^rename to (.*)$", header, re.M) \
                or re.search(r"^--- a/(.*)$", header, re.M)
            if m and sep:
                out[m.group(1)] = ("@@" + hunks).rstrip("\n")
        return out
