"""Pushing the task commits that wait for one branch together: one commit per task, one push.

`push_together` stacks every waiting change on the branch head, in order, and pushes the stack once
(as GitHub's webhook writer groups commits). The fast way, when no change overlaps another or what
the branch gained since the change's base: every patch applied in one `git apply --cached`, the
applied index inspected by the policy once, the commits written by one `git fast-import`; a
handful of git processes whatever the number of tasks. Otherwise, or when any check of the fast
way disagrees, change by change (`Clone.commit_patch`: a 3-way apply and an inspection each), which
also says which change was refused or did not apply. Either way the tree pushed is the applied and
inspected index, never the patch text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from app.execution import policy
from app.execution.gitwork import ApplyFailed, Clone, GitError, PushRejected, Refused
from app.text.redaction import redact_outbound
from app.text.rendering import Reason


@dataclass
class Waiting:
    """A verified task change waiting for the branch (app/execution/integration.py)."""
    key: str                 # the `Omoi-Task` trailer value
    base_sha: str            # what the sandbox (and the verify commands) saw
    patch: str
    message: str
    paths: Sequence[str]     # the paths the patch touches and the task's declared files; a rebase
                             # that changed one of them means verifying again


@dataclass
class Integrated:
    sha: str | None = None
    rebased: bool = False
    touched: bool = False     # the rebase changed one of the task's paths
    existing: bool = False
    refused: Reason | None = None   # the policy refused the change (nothing of it was pushed)
    failed: Reason | None = None    # it did not apply on the head (retry from the new head)


def push_together(clone: Clone, waiting: Sequence[Waiting], limits: policy.Limits | None = None,
                  secrets: Sequence[str] = (), max_rounds: int = 8) -> list[Integrated]:
    """Commit every waiting change, in order, on the branch head and push them with one push; a
    rejected push fetches and rebuilds the whole stack. A change that is refused or does not apply
    is left out and reported; the others still go. Idempotent per key (a commit already on the
    branch is found by its trailer and reported as `existing`)."""
    limits = limits or policy.Limits()
    # Optimistic: the head omoi pushed last from this host, without the network; the push checks it.
    head = clone.fetch_mirrored() or clone.fetch()
    for _ in range(max_rounds):
        found = clone.task_commits(head, since=[w.base_sha for w in waiting])
        todo = [w for w in waiting if w.key not in found]
        built = (_fast(clone, head, todo, limits, secrets) if todo else []) or _slow(clone, head, todo, limits, secrets)
        made = iter(built)
        out = [Integrated(found[w.key], existing=True) if w.key in found else next(made) for w in waiting]
        tip = next((r.sha for r in reversed(built) if r.sha), head)
        if tip == head:
            return out
        try:
            clone.push(tip, expect=head)  # head may be the mirror's: pushed only if GitHub agrees
        except PushRejected:
            head = clone.fetch()
            continue
        clone.record_pushed(tip)
        return out
    raise GitError(f"the push was rejected {max_rounds} times in a row (the branch keeps moving)")


def _slow(clone: Clone, head: str, todo: Sequence[Waiting], limits: policy.Limits,
          secrets: Sequence[str]) -> list[Integrated]:
    tip, out = head, []
    for w in todo:
        try:
            sha = clone.commit_patch(tip, w.patch, w.message, limits, secrets, three_way=tip != w.base_sha)
        except Refused as exc:
            out.append(Integrated(refused=exc.reason))
            continue
        except ApplyFailed as exc:
            out.append(Integrated(failed=exc.reason))
            continue
        rebased = tip != w.base_sha
        touched = rebased and bool(clone.changed_paths(w.base_sha, tip) & {*w.paths, *clone.changed_paths(tip, sha)})
        out.append(Integrated(sha, rebased=rebased, touched=touched))
        tip = sha
    return out


def _fast(clone: Clone, head: str, todo: Sequence[Waiting], limits: policy.Limits,
          secrets: Sequence[str]) -> list[Integrated] | None:
    """The stack in a few git processes, or None when the change-by-change way must decide."""
    owner: dict[str, int] = {}
    for i, w in enumerate(todo):
        if policy.precheck(w.patch, limits) or not w.paths:
            return None
        for path in w.paths:
            if owner.setdefault(path, i) != i:
                return None  # two changes share a path: each must be applied on the other
    upstream: dict[str, set[str]] = {}
    for w in todo:
        if w.base_sha not in upstream:
            upstream[w.base_sha] = clone.changed_paths(w.base_sha, head) if w.base_sha != head else set()
        if upstream[w.base_sha] & set(w.paths):
            return None  # the branch changed this task's files since its base: a 3-way apply and a re-verify
    try:
        clone.git("read-tree", head)
        joined = "".join(w.patch if w.patch.endswith("\n") else w.patch + "\n" for w in todo)
        if clone.git("apply", "--cached", "--binary", "--whitespace=nowarn", "-", stdin=joined.encode(),
                     check=False).returncode != 0:
            return None
        changes = clone.staged_changes(head)
        if any(policy.LINK in (c.old_mode, c.new_mode) or c.path not in owner for c in changes):
            return None  # symlinks need the whole-tree checks; a path no task named: let each decide
        scanner = policy.scanner_for([*secrets, clone.token])
        added = [c.new_sha for c in changes if c.adds_content]
        blobs = clone._read_many(added)
        policy.inspect(changes, limits, scanner, sizes={sha: len(data) for sha, data in blobs.items()},
                       read=blobs.__getitem__)
        tree = clone.out("write-tree")
        shas = _fast_import(clone, head, todo, [[c for c in changes if owner[c.path] == i] for i in range(len(todo))],
                            secrets)
        if clone.out("rev-parse", f"{shas[-1]}^{{tree}}") != tree:
            return None
    except (Refused, GitError, KeyError, ValueError):
        return None  # change by change says which one (and why)
    parents = [head, *shas[:-1]]
    return [Integrated(sha, rebased=parent != w.base_sha) for w, sha, parent in zip(todo, shas, parents)]


def _quote(path: str) -> bytes:
    """A path as `git fast-import` reads a C-style quoted one (any byte is safe this way)."""
    out = bytearray(b'"')
    for b in path.encode("utf-8", "surrogateescape"):
        out += b"\\%03o" % b if b < 0x20 or b >= 0x7f or b in b'"\\' else bytes([b])
    return bytes(out + b'"')


def _stripspace(text: str) -> str:
    """What `git stripspace` (and so `git commit`) makes of a message."""
    lines = [line.rstrip(" \t\n\v\f\r") for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def _fast_import(clone: Clone, head: str, todo: Sequence[Waiting], changes: list[list[policy.Change]],
                 secrets: Sequence[str]) -> list[str]:
    """One commit per change, each on the one before, by one `git fast-import`; returns their shas."""
    name, email = clone.author
    stamp = f"{name} <{email}> {int(time.time())} +0000".encode()
    stream = bytearray()
    for i, (w, mine) in enumerate(zip(todo, changes), start=1):
        message = _stripspace(redact_outbound(w.message, extra=[clone.token, *secrets])).encode()
        stream += b"commit refs/omoi/integrate\nmark :%d\nauthor %s\ncommitter %s\ndata %d\n%s\n" % (
            i, stamp, stamp, len(message), message)
        stream += b"from %s\n" % (head.encode() if i == 1 else b":%d" % (i - 1))
        for c in mine:
            stream += (b"D %s\n" % _quote(c.path) if c.status == "D" else
                       b"M %s %s %s\n" % (c.new_mode.encode(), c.new_sha.encode(), _quote(c.path)))
        stream += b"\n"
    stream += b"done\n"
    marks = clone.path / "integrate.marks"
    clone.git("fast-import", "--quiet", "--done", "--force", f"--export-marks={marks}", stdin=bytes(stream))
    found = dict(line.split(" ", 1) for line in marks.read_text().split("\n") if line)
    return [found[f":{i}"].strip() for i in range(1, len(todo) + 1)]
