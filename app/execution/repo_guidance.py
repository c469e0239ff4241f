"""The repository's own instructions for contributors and agents (CLAUDE.md, AGENTS.md, CONTRIBUTING.md,
.github/copilot-instructions.md), read from its default branch in omoi's host mirror (app/sandbox/clone.py
Mirror: git, no GitHub API call), for every agent's prompt as data (templates/execution/_repo_guidance.md.j2).

The default branch, not the spec's branch: an agent's change to CLAUDE.md on the branch cannot steer the
next task. The text is untrusted: only regular files (no symlinks), each bounded, all bounded, redacted
and sanitised so it cannot close its data block. Repository hooks and settings stay off: agents run
with `setting_sources=[]` (app/agent/session.py), so the CLI never loads CLAUDE.md or .claude/ itself.
Blocking; never raises (no guidance is the fallback).
"""
from __future__ import annotations

import re
import subprocess

from app.config import Settings
from app.execution import attempt_feedback
from app.observability.logs import get_logger
from app.sandbox.base import SandboxError
from app.sandbox.clone import HARDENING_ARGS, Mirror

log = get_logger("omoi.guidance")
FILES = ["CLAUDE.md", "AGENTS.md", ".github/copilot-instructions.md", "CONTRIBUTING.md", ".github/CONTRIBUTING.md",
         "docs/CONTRIBUTING.md"]
FILE_CHARS, TOTAL_CHARS = 8000, 16000
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")


def read(settings: Settings, url: str, default_branch: str | None, token: str | None = None) -> list[dict]:
    """[{path, text}] of the guidance files on `default_branch`; the mirror is fetched only when it lacks it."""
    if not default_branch or not _BRANCH.fullmatch(default_branch) or default_branch.startswith("-") \
            or ".." in default_branch:
        return []
    try:
        mirror = Mirror.existing(url)
        if mirror is not None:
            try:
                with mirror.reading():
                    return _files(settings, mirror, f"refs/heads/{default_branch}", token)
            except ValueError:  # the mirror lacks the default branch: fetched below
                pass
        mirror = Mirror(url)
        mirror.update(token)
        with mirror.reading():
            return _files(settings, mirror, f"refs/heads/{default_branch}", token)
    except (SandboxError, OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("guidance_unavailable", error=type(exc).__name__)
        return []


def _git(mirror: Mirror, *args: str) -> bytes:
    proc = subprocess.run(["git", *HARDENING_ARGS, *args], cwd=str(mirror.path), env=mirror._env(),
                          capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise ValueError(f"git {args[0]} failed")
    return proc.stdout


def _files(settings: Settings, mirror: Mirror, ref: str, token: str | None) -> list[dict]:
    listing = _git(mirror, "ls-tree", "-z", "--full-tree", "-l", ref, "--", *FILES)
    found: dict[str, tuple[str, int]] = {}
    for entry in listing.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        parts = meta.split()
        # regular files only: a symlink's blob is its target path, a submodule has none
        if len(parts) == 4 and parts[0] in (b"100644", b"100755") and parts[1] == b"blob":
            found[path.decode("utf-8", "replace")] = (parts[2].decode(), int(parts[3]))
    out, left = [], TOTAL_CHARS
    for path in FILES:  # in this order: the agent files first
        if path not in found or left <= 0:
            continue
        sha, size = found[path]
        raw = _git(mirror, "cat-file", "blob", sha)[:FILE_CHARS * 4] if size else b""
        text = attempt_feedback.as_data(raw.decode("utf-8", "replace"), min(FILE_CHARS, left), settings, [token],
                                        keep_head=True)
        if text:
            out.append({"path": path, "text": text})
            left -= len(text)
    return out
