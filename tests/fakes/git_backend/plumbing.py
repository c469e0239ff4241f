"""What the git helpers share: the isolated environment git runs in, git's errors, the records
read from a repository (tree entries, commits, file changes) and the branch-protection hook."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


ZERO_SHA = "0" * 40
DEFAULT_AUTHOR = ("octo", "octo@example.com")


PROTECTION_HOOK = """#!/bin/sh
zero=0000000000000000000000000000000000000000
list="$GIT_DIR/protected-refs"
status=0
while read old new ref; do
  [ -f "$list" ] && grep -qxF "$ref" "$list" || continue
  if [ "$new" = "$zero" ]; then
    echo "error: GH006: Protected branch update failed for $ref." >&2
    echo "error: Cannot delete this branch" >&2
    status=1
  elif [ "$old" != "$zero" ] && ! git merge-base --is-ancestor "$old" "$new"; then
    echo "error: GH006: Protected branch update failed for $ref." >&2
    echo "error: Cannot force-push to this branch" >&2
    status=1
  fi
done
exit $status
"""


class GitError(Exception):
    """A git command failed; ``stderr`` holds git's message."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.args_ = args
        self.returncode = returncode
        self.stderr = stderr


def isolated_env(home: Path | str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for git commands run by the fake: no user/system config, no prompts, C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(Path(home) / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        LANG="C",
    )
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class TreeEntry:
    path: str
    mode: str
    type: str  # "blob" | "tree" | "commit" (submodule)
    sha: str
    size: int | None  # None for trees


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str  # ISO 8601 with offset, as git prints it (%aI)
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


@dataclass(frozen=True)
class FileChange:
    """One file of a diff, in the terms GitHub's ``diff-entry`` uses."""

    filename: str
    status: str  # added | removed | modified | renamed
    additions: int
    deletions: int
    sha: str | None  # blob sha on the new side (None when removed)
    patch: str | None
    previous_filename: str | None = None


def _iso_utc(git_iso: str) -> str:
    """``2024-01-01T12:00:00+02:00`` -> ``2024-01-01T10:00:00Z`` (GitHub's format)."""
    import datetime as dt

    return dt.datetime.fromisoformat(git_iso).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
