"""What omoi refuses to commit: changes to blocked paths, and anything that looks like a secret.

Both checks read the unified diff the sandbox produced (`git diff --binary`), so they see exactly
what would be committed, whatever the agent said it did.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# Token shapes worth refusing outright (they are never part of a legitimate change).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("an Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an AWS access key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
)


@dataclass(frozen=True)
class Refusal:
    reason: str


def _unquote(path: str) -> str:
    path = path.strip()
    if path.startswith('"') and path.endswith('"'):
        path = path[1:-1].encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    return path


def changed_paths(diff: str) -> list[str]:
    """Every path the diff creates, modifies, deletes or renames (old and new names)."""
    paths: list[str] = []
    for line in diff.splitlines():
        candidate = None
        if line.startswith("--- a/") or line.startswith("+++ b/"):
            candidate = line[6:]
        elif line.startswith('--- "a/') or line.startswith('+++ "b/'):
            candidate = '"' + line[7:]
        elif line.startswith("rename from ") or line.startswith("rename to "):
            candidate = line.split(" ", 2)[2]
        elif line.startswith("copy from ") or line.startswith("copy to "):
            candidate = line.split(" ", 2)[2]
        elif line.startswith("diff --git "):
            m = re.match(r'^diff --git "?a/(.+?)"? "?b/(.+?)"?$', line)
            if m:
                paths.extend(_unquote(p) for p in m.groups())
            continue
        if candidate:
            paths.append(_unquote(candidate))
    seen: set[str] = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def is_blocked(path: str, patterns: list[str]) -> str | None:
    """The pattern that blocks `path`, if any (`dir/**` also blocks `dir` itself)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return pattern
        if pattern.endswith("/**") and (path == pattern[:-3] or path.startswith(pattern[:-2])):
            return pattern
    return None


def check_diff(diff: str, blocked_paths: list[str]) -> Refusal | None:
    """Why this diff must not be committed, or None when it may be."""
    for path in changed_paths(diff):
        pattern = is_blocked(path, blocked_paths)
        if pattern:
            return Refusal(f"the change touches `{path}`, which matches the blocked path `{pattern}`")
    for line in diff.splitlines():
        if not line.startswith("+") or line.startswith("+++"):
            continue
        for what, pattern in SECRET_PATTERNS:
            if pattern.search(line):
                return Refusal(f"the change adds what looks like {what}; secrets are never committed")
    return None
