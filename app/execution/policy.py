"""What omoi refuses to commit: blocked paths, links out of the tree, binaries, oversized changes, secrets.

The patch comes from the sandbox (`git diff --binary`), so it is text a possibly hostile model made.
`precheck` reads that text and is only a cheap early answer. The decision that counts is `inspect`:
app/execution/gitwork.py applies the patch in omoi's own clone first and hands over what the index then holds
(modes, paths, blob contents), so nothing the patch text says about itself is believed.
Refusal reasons name the path and the rule; they never quote a secret.
"""
from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from app.execution.secret_scan import (MIN_SECRET_CHARS, SECRET_KINDS, SECRET_PATTERNS, SecretScanner, TooLarge,
                                      scanner_for)
from app.text.rendering import Reason, reason

LINK, GITLINK = "120000", "160000"
MAX_LINK_HOPS = 40     # as the kernel's ELOOP limit


@dataclass(frozen=True)
class Refusal:
    reason: Reason  # templates/reasons/policy/


class Refused(Exception):
    """The change must not be committed; `reason` says why, for the run's report (templates/reasons/policy/)."""

    def __init__(self, why: Reason) -> None:
        super().__init__(str(why))
        self.reason = why


@dataclass(frozen=True)
class Limits:
    """What a change may contain; `for_repo` fills it from the repository's config where it says so."""
    blocked_paths: tuple[str, ...] = ()
    max_patch_bytes: int = 2_000_000
    max_files: int = 200
    max_file_bytes: int = 10_000_000      # any one new blob
    max_inflated_bytes: int = 20_000_000  # what a compressed blob may expand to while it is scanned
    allow_binary: bool = False
    allow_gitattributes: bool = False

    @classmethod
    def for_repo(cls, cfg: object) -> "Limits":
        """From a repository's effective configuration (app/github/repo_config.py `Effective`)."""
        known = {name: getattr(cfg, name) for name in ("max_patch_bytes", "max_files", "max_file_bytes",
                                                       "allow_binary", "allow_gitattributes") if hasattr(cfg, name)}
        return cls(blocked_paths=tuple(cfg.blocked_paths), **known)


def secrets_from_settings(settings: object, extra: Iterable[str | None] = ()) -> list[str]:
    """omoi's configured secrets (the values the secret scan must never let through), plus `extra`."""
    from app.text.redaction import secrets_of  # the same set the redaction point covers

    values: list[str | None] = [*extra, *sorted(secrets_of(settings))]
    return [v for v in values if isinstance(v, str) and len(v.strip()) >= MIN_SECRET_CHARS]


# -- the patch text (cheap, before verify) ----------------------------------------------------------

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


def is_blocked(path: str, patterns: Iterable[str]) -> str | None:
    """The pattern that blocks `path`, if any (`dir/**` also blocks `dir` itself and all below it)."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(path, pattern):
            return pattern
        if pattern.endswith("/**") and (path == pattern[:-3] or path.startswith(pattern[:-2])):
            return pattern
    return None


def _blocked(path: str, patterns: Iterable[str]) -> Refusal | None:
    pattern = is_blocked(path, patterns)
    if pattern:
        return Refusal(reason("policy/blocked_path", path=path, pattern=pattern))
    return None


def precheck(patch: str, limits: Limits) -> Refusal | None:
    """A quick look at the patch text: size, number of files, blocked paths, declared binary sizes."""
    size = len(patch.encode())
    if size > limits.max_patch_bytes:
        return Refusal(reason("policy/patch_too_big", size=size, limit=limits.max_patch_bytes))
    paths = changed_paths(patch)
    if len(paths) > limits.max_files:
        return Refusal(reason("policy/too_many_files", count=len(paths), limit=limits.max_files))
    for path in paths:
        refusal = _blocked(path, limits.blocked_paths)
        if refusal:
            return refusal
    # A binary patch inflates: refuse before git allocates what the header announces.
    for m in re.finditer(r"^(?:literal|delta) (\d+)$", patch, re.MULTILINE):
        if int(m.group(1)) > limits.max_file_bytes:
            return Refusal(reason("policy/binary_too_big", size=int(m.group(1)), limit=limits.max_file_bytes))
    return None


def check_diff(diff: str, blocked_paths: list[str]) -> Refusal | None:
    """Why this diff must not be committed, or None (patch text only; `inspect` is the real check)."""
    for path in changed_paths(diff):
        refusal = _blocked(path, blocked_paths)
        if refusal:
            return refusal
    for line in diff.splitlines():
        if not line.startswith("+") or line.startswith("+++"):
            continue
        for kind, pattern in SECRET_PATTERNS:
            if pattern.search(line):
                return Refusal(reason("policy/secret_added", what=reason(f"secret/{kind}")))
    return None


# -- the applied change (authoritative) ----------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One entry of `git diff-index --cached --raw --no-renames` on omoi's clone."""
    path: str
    status: str    # A, M, D, T
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str

    @property
    def adds_content(self) -> bool:
        return self.status != "D" and self.new_mode != GITLINK and self.old_sha != self.new_sha


def inspect(changes: Sequence[Change], limits: Limits, scanner: "SecretScanner", *, sizes: Mapping[str, int],
            read: Callable[[str], bytes], links_before: Mapping[str, str] | None = None,
            links_after: Mapping[str, str] | None = None) -> None:
    """Raise `Refused` when the applied change breaks a rule; the link maps (path -> target of every
    symlink in the tree before and after) are needed only when a change involves a symlink."""
    if len(changes) > limits.max_files:
        raise Refused(reason("policy/too_many_files", count=len(changes), limit=limits.max_files))
    for c in changes:
        refusal = _blocked(c.path, limits.blocked_paths) or _path_rules(c, limits)
        if refusal:
            raise Refused(refusal.reason)
    if links_after is not None:
        refusal = check_links(links_before or {}, links_after, {c.path for c in changes if c.new_mode == LINK})
        if refusal:
            raise Refused(refusal.reason)
    names = "\n".join(c.path for c in changes if c.status == "A")
    if scanner.findings(names.encode()):
        raise Refused(reason("policy/secret_in_name"))
    for c in changes:
        if c.adds_content:
            _check_blob(c, limits, scanner, sizes, read)


def _path_rules(c: Change, limits: Limits) -> Refusal | None:
    if not limits.allow_gitattributes and posixpath.basename(c.path).lower() == ".gitattributes":
        return Refusal(reason("policy/gitattributes", path=c.path))
    if GITLINK in (c.old_mode, c.new_mode) and c.status != "D":
        return Refusal(reason("policy/submodule", path=c.path))
    return None


def _check_blob(c: Change, limits: Limits, scanner: "SecretScanner", sizes: Mapping[str, int],
                read: Callable[[str], bytes]) -> None:
    size = sizes.get(c.new_sha, 0)
    if size > limits.max_file_bytes:
        raise Refused(reason("policy/file_too_big", path=c.path, size=size, limit=limits.max_file_bytes))
    data = read(c.new_sha)
    if c.new_mode != LINK and not limits.allow_binary and is_binary(data):
        raise Refused(reason("policy/binary_file", path=c.path))
    try:
        found = scanner.findings(data, inflate_cap=limits.max_inflated_bytes)
        if found and c.old_mode not in ("000000", GITLINK):
            found -= scanner.findings(read(c.old_sha), inflate_cap=limits.max_inflated_bytes)  # already there
    except TooLarge:
        raise Refused(reason("policy/inflates", path=c.path, limit=limits.max_inflated_bytes)) from None
    if found:
        kind = min((k for k, _ in found), key=SECRET_KINDS.index)
        raise Refused(reason("policy/secret_in_file", path=c.path, what=reason(f"secret/{kind}")))


def is_binary(data: bytes) -> bool:
    """What omoi cannot read as text: a NUL byte anywhere (git looks at the first 8000) or not UTF-8."""
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def resolve_link(path: str, links: Mapping[str, str]) -> str | None:
    """Follow the symlink at `path` through the tree's other symlinks, as the kernel would once it is
    checked out: None when it stays inside the tree, else "absolute", "outside" or "loop"."""
    stack = path.split("/")[:-1]
    pending = links[path].split("/")
    hops = 0
    if links[path].startswith("/"):
        return "absolute"
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return "outside"
            stack.pop()
            continue
        here = "/".join([*stack, part])
        if here not in links:
            stack.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return "loop"
        if links[here].startswith("/"):
            return "absolute"
        pending = links[here].split("/") + pending  # relative to the directory holding that link
    return None


def check_links(before: Mapping[str, str], after: Mapping[str, str], changed: set[str]) -> Refusal | None:
    """A symlink the change adds or alters, or one it makes resolve differently, must stay in the tree.
    A link that already pointed outside before the change is left to the repository's owners."""
    for path in sorted(after):
        why = resolve_link(path, after)
        if why is None or (path not in changed and path in before and resolve_link(path, before)):
            continue
        if why == "absolute":
            return Refusal(reason("policy/link_absolute", path=path))
        if why == "loop":
            return Refusal(reason("policy/link_loop", path=path))
        return Refusal(reason("policy/link_outside", path=path))
    return None
