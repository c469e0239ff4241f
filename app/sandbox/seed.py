"""A sandbox's repository seeded from a pack of the host mirror, made once per state of the mirror.

`git clone --no-local` from the mirror gave every sandbox a fresh pack of what the mirror's refs
reach: six git processes, and a `pack-objects` plus an `index-pack` (hashing every object) for every
sandbox, although the tasks that start together all copy the same state. Here that pack (and its
index) is written once per state of the mirror's refs, in a cache beside the mirror, and each
sandbox gets a copy of the two files (never a link: the sandbox cannot change the cache) with the
refs a clone would have made: branches as `refs/remotes/origin/*`, tags as tags. Its `origin` is the
repository, never the mirror. What the mirror holds that no ref reaches is not in the pack, as with
a clone. Two git processes per sandbox: `init` and the `checkout`.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.sandbox.base import SandboxError

KEEP = 2  # packs kept per mirror: the newest state, and the one tasks may still be copying
# A URL written into the sandbox's config as it is (nothing for git to quote); anything else is cloned.
PLAIN_URL = re.compile(r"[A-Za-z0-9._~:/?&=%@+,!$*()\[\]-]+")
_REF = re.compile(rb"[0-9a-f]{40} refs/(?:heads|tags)/[^\x00-\x20\x7f~^:?*\[\\]+")


def seed(mirror, sha: str, dest: Path, *, url: str, identity: tuple[str, str], env: dict) -> None:
    """Make `dest` (empty) a repository of what `mirror`'s refs reach, `origin` at `url`, checked out
    at `sha` (detached). Raises SandboxError when it cannot (the caller clones instead)."""
    if not PLAIN_URL.fullmatch(url):
        raise SandboxError("origin URL needs quoting")
    _run(["init", "-q", "--template=", str(dest)], cwd=None, env=env)
    git_dir = dest / ".git"
    with mirror.reading():
        refs = _refs(mirror)
        files = _cached(mirror, refs)
        if files is not None:
            _copy(files, git_dir)
    if files is None:  # written under the mirror's exclusive lock: one writer per state
        with mirror.writing():
            refs = _refs(mirror)
            files = _cached(mirror, refs) or _write_pack(mirror, refs)
            _copy(files, git_dir)
    lines = []
    for line in refs.splitlines():
        target, name = line.split(b" ", 1)
        if name.startswith(b"refs/heads/"):
            name = b"refs/remotes/origin/" + name[len(b"refs/heads/"):]
        lines.append(target + b" " + name + b"\n")
    (git_dir / "packed-refs").write_bytes(b"".join(lines))
    sections = (('remote "origin"', (("url", url), ("fetch", "+refs/heads/*:refs/remotes/origin/*"))),
                ("user", (("name", identity[0]), ("email", identity[1]))))
    with open(git_dir / "config", "a") as config:
        for section, values in sections:
            config.write(f"[{section}]\n" + "".join(f"\t{key} = {value}\n" for key, value in values))
    # fails when the mirror's refs do not reach `sha`
    _run(["checkout", "-q", "--detach", sha], cwd=str(dest), env=env)


def _refs(mirror) -> bytes:
    """The mirror's branches and tags, `<sha> <name>` per line (the state a pack is made for)."""
    out = subprocess.run(["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"],
                         cwd=str(mirror.path), env=mirror._env(), capture_output=True, timeout=60)
    lines = out.stdout.splitlines()
    if out.returncode != 0 or not lines or not all(_REF.fullmatch(line) for line in lines):
        raise SandboxError("the mirror's refs could not be read")
    return b"\n".join(lines)


def _cache_dir(mirror) -> Path:
    return mirror.path.with_suffix(".packs")


def _cached(mirror, refs: bytes) -> list[Path] | None:
    state = _cache_dir(mirror) / hashlib.sha256(refs).hexdigest()[:32]
    files = sorted(state.glob("pack-*.*")) if state.is_dir() else []
    return files if len(files) == 2 else None


def _write_pack(mirror, refs: bytes) -> list[Path]:
    """The pack of what `refs` reach, with its index, into the cache (older states pruned)."""
    cache = _cache_dir(mirror)
    cache.mkdir(mode=0o700, exist_ok=True)
    state = cache / hashlib.sha256(refs).hexdigest()[:32]
    work = Path(tempfile.mkdtemp(prefix=".new-", dir=cache))
    try:
        tips = b"".join(line.split(b" ", 1)[0] + b"\n" for line in refs.splitlines())
        _run(["pack-objects", "--revs", "--quiet", str(work / "pack")], cwd=str(mirror.path), env=mirror._env(),
             stdin=tips)
        os.rename(work, state)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    for old in sorted((p for p in cache.iterdir() if p != state), key=lambda p: p.stat().st_mtime)[:-(KEEP - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return sorted(state.glob("pack-*.*"))


def _copy(files: list[Path], git_dir: Path) -> None:
    pack_dir = git_dir / "objects" / "pack"
    pack_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, pack_dir / f.name)  # a copy: nothing the sandbox does reaches the cache
        os.chmod(pack_dir / f.name, 0o444)


def _run(args: list[str], *, cwd: str | None, env: dict, stdin: bytes | None = None) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=600)
    if proc.returncode != 0:
        name = next((a for a in args if not a.startswith("-") and "=" not in a), "")  # after any `-c`
        raise SandboxError(f"git {name} failed: {proc.stderr.decode(errors='replace')[-500:]}")
