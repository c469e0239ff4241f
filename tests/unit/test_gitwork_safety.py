"""omoi's commit clone against a hostile repository and a hostile patch.

Real git throughout: a bare repository is `origin` (file:// URL), patches are made by `git diff
--binary` in a scratch clone exactly as a sandbox makes them, and app/execution/gitwork.py commits and pushes.
Planted hooks and drivers would write a marker file; the tests assert that it never appears.
"""
from __future__ import annotations

import base64
import gzip
import os
import secrets
import shutil
import stat
import subprocess
import zlib
from pathlib import Path
from typing import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.execution import policy
from app.execution.gitwork import ApplyFailed, Clone, commit_and_push, private_parent
from app.sandbox.base import git_diff_args

BRANCH = "main"
TOKEN = "ghs_" + "T0k3n" * 7 + "x"   # the clone's installation token (always scanned for)
AUTHOR = ("omoi[bot]", "4242+omoi[bot]@users.noreply.github.com")
FILES = {
    "README.md": "# demo\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(1, 21)),
    "docs/keys.md": "AWS shows AKIAIOSFODNN7EXAMPLE as its example key.\n",
}


def git(cwd: Path, *args: str, stdin: bytes | None = None, env: dict | None = None) -> str:
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env={**base, **(env or {})})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


class Origin:
    """A bare `origin` plus a scratch clone in which people (or the agent) make changes."""

    def __init__(self, root: Path, files: dict[str, str | bytes]) -> None:
        self.root = root
        self.bare = root / "origin.git"
        self.url = f"file://{self.bare}"
        git(root, "init", "-q", "--bare", "-b", BRANCH, str(self.bare))
        self.work = root / "work"
        git(root, "clone", "-q", self.url, str(self.work))
        git(self.work, "checkout", "-q", "-b", BRANCH)
        self.commit(lambda w: write(w, files), "initial")

    def head(self) -> str:
        return git(self.root, "--git-dir", str(self.bare), "rev-parse", BRANCH)

    def file(self, path: str, ref: str = BRANCH) -> str:
        return git(self.root, "--git-dir", str(self.bare), "show", f"{ref}:{path}")

    def commit(self, edit: Callable[[Path], None], message: str) -> str:
        """A person's commit, pushed to origin."""
        git(self.work, "fetch", "-q", "origin")
        if self.has_branch():
            git(self.work, "reset", "-q", "--hard", f"origin/{BRANCH}")
        edit(self.work)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:{BRANCH}")
        return self.head()

    def has_branch(self) -> bool:
        return subprocess.run(["git", "--git-dir", str(self.bare), "rev-parse", "-q", "--verify", BRANCH],
                              capture_output=True).returncode == 0

    def patch(self, edit: Callable[[Path], None]) -> tuple[str, str]:
        """(base, patch): the change `edit` makes, as a sandbox would produce it."""
        base = self.head()
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "reset", "-q", "--hard", base)
        git(self.work, "clean", "-qfdx")
        edit(self.work)
        git(self.work, "add", "-A")
        patch = git_out(self.work, git_diff_args(base)[1:])
        git(self.work, "reset", "-q", "--hard", base)
        git(self.work, "clean", "-qfdx")
        return base, patch


def git_out(cwd: Path, args: list[str]) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True,
                          env={"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"})
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8", errors="replace")


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def writes(files: dict[str, str | bytes]) -> Callable[[Path], None]:
    return lambda root: write(root, files)


def symlink(name: str, target: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / name)
    return edit


@pytest.fixture
def origin(tmp_path) -> Origin:
    return Origin(tmp_path, FILES)


@pytest.fixture
def clone(origin):
    c = Clone(url=origin.url, token=TOKEN, branch=BRANCH, author=AUTHOR)
    c.clone()
    yield c
    c.cleanup()


def push(clone: Clone, base: str, patch: str, key: str = "7/T1", **kw):
    return commit_and_push(clone, base_sha=base, patch=patch, message=f"T1: change\n\nOmoi-Task: {key}\n",
                           task_key=key, **kw)


def refused(clone: Clone, origin: Origin, base: str, patch: str, **kw) -> str:
    before = origin.head()
    with pytest.raises(policy.Refused) as info:
        push(clone, base, patch, **kw)
    assert origin.head() == before  # nothing was pushed
    return info.value.reason


# -- the clone itself ---------------------------------------------------------------------------

def test_clone_directory_is_private_and_bare(clone):
    for path in (private_parent(), clone.path, clone.home):
        mode = os.lstat(path).st_mode
        assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700, (path, oct(mode))
    assert clone.path.parent == private_parent()
    assert list(clone.home.iterdir()) == []
    assert not (clone.git_dir / "README.md").exists() and (clone.git_dir / "HEAD").is_file()  # no work tree


def test_normal_patch_commits_and_pushes(origin, clone):
    base, patch = origin.patch(writes({"src/new.py": "print('new')\n", "README.md": "# demo\n\nMore.\n"}))
    pushed = push(clone, base, patch, limits=policy.Limits(blocked_paths=(".github/**",)), secrets=["unused-secret-123"])
    assert not pushed.rebased and not pushed.existing and origin.head() == pushed.sha
    assert origin.file("src/new.py") == "print('new')" and origin.file("README.md").endswith("More.")
    log = git(origin.root, "--git-dir", str(origin.bare), "log", "-1", "--format=%an <%ae>%n%P%n%B", BRANCH)
    assert log.splitlines()[:2] == [f"{AUTHOR[0]} <{AUTHOR[1]}>", base]
    assert log.rstrip().endswith("Omoi-Task: 7/T1")
    assert push(clone, base, patch).existing  # idempotent per task key


def test_symlink_inside_the_tree_is_committed(origin, clone):
    base, patch = origin.patch(symlink("docs/readme.md", "../README.md"))
    push(clone, base, patch)
    assert git(origin.root, "--git-dir", str(origin.bare), "ls-tree", BRANCH, "docs/readme.md").startswith("120000")


def test_rebase_onto_moved_branch_reapplies_and_rechecks(origin, clone):
    base, patch = origin.patch(writes({"src/app.py": FILES["src/app.py"].replace("line 10\n", "line ten\n")}))
    origin.commit(writes({"src/app.py": FILES["src/app.py"].replace("line 12\n", "line twelve\n")}), "a person")
    pushed = push(clone, base, patch)
    assert pushed.rebased
    text = origin.file("src/app.py")
    assert "line ten" in text and "line twelve" in text
    # The re-applied change is inspected again: `docs/pw -> up/../x` stays inside while `docs/up` is a
    # directory, and points outside once someone made `docs/up` a link to `..`.
    base, patch = origin.patch(symlink("docs/pw", "up/../x"))
    origin.commit(lambda r: (writes({"docs/up/a.txt": "a\n"})(r)), "a directory")
    origin.commit(lambda r: (shutil.rmtree(r / "docs/up"), symlink("docs/up", "..")(r)), "now a link")
    before = origin.head()
    with pytest.raises(policy.Refused) as info:
        push(clone, base, patch, key="7/T2")
    assert "`docs/pw`" in info.value.reason and "outside" in info.value.reason and origin.head() == before


def test_change_that_does_not_apply_fails_cleanly(origin, clone):
    base, patch = origin.patch(writes({"src/app.py": "replaced\n"}))
    with pytest.raises(ApplyFailed):
        push(clone, base, patch.replace("-line 5\n", "-line five\n"))


# -- hooks, fsmonitor, drivers planted in the clone's own config --------------------------------

HOOKS = ("pre-commit", "post-commit", "commit-msg", "pre-push", "reference-transaction", "post-checkout",
         "post-rewrite", "pre-rebase", "pre-applypatch", "post-update", "pre-auto-gc", "push-to-checkout")


def plant_hooks(directory: Path, marker: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        hook = directory / name
        hook.write_text(f"#!/bin/sh\necho {name} >> {marker}\nexit 0\n")
        hook.chmod(0o755)


@pytest.mark.parametrize("where", ["hooks directory", "core.hooksPath"])
def test_planted_hooks_do_not_run(origin, clone, tmp_path, where):
    marker = tmp_path / "hook-ran"
    if where == "hooks directory":
        plant_hooks(clone.git_dir / "hooks", marker)
    else:
        plant_hooks(tmp_path / "evil-hooks", marker)
        git(tmp_path, "--git-dir", str(clone.git_dir), "config", "core.hooksPath", str(tmp_path / "evil-hooks"))
    # the plant is live: plain git in that clone does run it
    git(tmp_path, "--git-dir", str(clone.git_dir), "update-ref", "refs/heads/probe", "HEAD")
    assert "reference-transaction" in marker.read_text()
    marker.unlink()
    base, patch = origin.patch(writes({"src/new.py": "x = 1\n"}))
    origin.commit(writes({"other.txt": "moved\n"}), "someone pushed first")  # also exercise the re-apply
    pushed = push(clone, base, patch)
    assert pushed.rebased and origin.head() == pushed.sha
    assert not marker.exists()


def test_planted_fsmonitor_and_helpers_do_not_run(origin, clone, tmp_path):
    marker = tmp_path / "ran"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {marker}\nexit 1\n")
    script.chmod(0o755)
    for key in ("core.fsmonitor", "core.sshCommand", "credential.helper", "core.askPass", "gpg.program",
                "core.pager", "core.editor"):
        git(tmp_path, "--git-dir", str(clone.git_dir), "config", key, str(script))
    git(tmp_path, "--git-dir", str(clone.git_dir), "config", "commit.gpgSign", "true")
    git(tmp_path, "--git-dir", str(clone.git_dir), "config", "log.showSignature", "true")
    base, patch = origin.patch(writes({"src/new.py": "x = 1\n"}))
    push(clone, base, patch)
    assert origin.file("src/new.py") == "x = 1" and not marker.exists()


def test_filter_diff_and_merge_drivers_do_not_run(tmp_path):
    origin = Origin(tmp_path, {**FILES, ".gitattributes": "* filter=evil diff=evil merge=evil\n"})
    clone = Clone(url=origin.url, token=TOKEN, branch=BRANCH, author=AUTHOR)
    try:
        clone.clone()
        marker = tmp_path / "driver-ran"
        for key, value in (("filter.evil.clean", f"sh -c 'echo clean >> {marker}; cat'"),
                           ("filter.evil.smudge", f"sh -c 'echo smudge >> {marker}; cat'"),
                           ("filter.evil.process", f"sh -c 'echo process >> {marker}'"),
                           ("filter.evil.required", "true"),
                           ("diff.evil.textconv", f"sh -c 'echo textconv >> {marker}; cat \"$0\"'"),
                           ("diff.evil.command", f"sh -c 'echo diff >> {marker}'"),
                           ("merge.evil.driver", f"sh -c 'echo merge >> {marker}; exit 1'")):
            git(tmp_path, "--git-dir", str(clone.git_dir), "config", key, value)
        (clone.git_dir / "info").mkdir(exist_ok=True)
        (clone.git_dir / "info" / "attributes").write_text("* filter=evil diff=evil\n")
        base, patch = origin.patch(writes({"src/app.py": FILES["src/app.py"].replace("line 10\n", "line ten\n")}))
        # someone changed a line of its context: the change is merged three-way when re-applied
        origin.commit(writes({"src/app.py": FILES["src/app.py"].replace("line 12\n", "line twelve\n")}), "near")
        pushed = push(clone, base, patch)
        assert pushed.rebased and not marker.exists()
        assert "line ten\nline 11\nline twelve\n" in origin.file("src/app.py")
    finally:
        clone.cleanup()


# -- refusals of the applied change -------------------------------------------------------------

def _gitlink(root: Path) -> None:
    """An embedded repository: `git add -A` records it as a submodule (mode 160000)."""
    inner = root / "vendor" / "lib"
    inner.mkdir(parents=True)
    git(inner, "init", "-q")
    git(inner, "commit", "-q", "--allow-empty", "-m", "lib")


REFUSALS = {
    "symlink out of the tree": (symlink("docs/pw", "../../etc/passwd"), {}, ["`docs/pw`", "outside the repository"]),
    "absolute symlink": (symlink("pw", "/etc/passwd"), {}, ["`pw`", "absolute path"]),
    "symlink out through another symlink": (
        lambda r: (symlink("docs/up", "..")(r), symlink("docs/pw", "up/../x")(r)), {},
        ["`docs/pw`", "outside the repository"]),
    "binary file": (writes({"assets/logo.bin": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"}), {},
                    ["`assets/logo.bin`", "binary"]),
    "new .gitattributes": (writes({".gitattributes": "*.py diff=python\n"}), {},
                           ["`.gitattributes`", ".gitattributes are not allowed"]),
    "nested .gitattributes": (writes({"src/.gitattributes": "* -text\n"}), {}, ["`src/.gitattributes`"]),
    "too many files": (writes({f"f{i}.txt": f"{i}\n" for i in range(4)}), {"max_files": 3},
                       ["4 files", "at most 3"]),
    "patch too large": (writes({"big.txt": "x" * 3000 + "\n"}), {"max_patch_bytes": 2000}, ["at most 2000 are allowed"]),
    "file too large": (writes({"big.txt": "y\n" * 600}), {"max_file_bytes": 1000}, ["`big.txt`", "at most 1000"]),
    "submodule": (_gitlink, {}, ["`vendor/lib`", "submodule"]),
    "workflow": (writes({".github/workflows/ci.yml": "on: push\n"}), {},
                 ["`.github/workflows/ci.yml`", "blocked path `.github/**`"]),
    "action": (writes({".github/actions/x/action.yml": "runs: {}\n"}), {},
               ["`.github/actions/x/action.yml`", "blocked path `.github/**`"]),
    "CODEOWNERS": (writes({".github/CODEOWNERS": "* @evil\n"}), {}, ["`.github/CODEOWNERS`", "blocked path `.github/**`"]),
    "dependabot": (writes({".github/dependabot.yml": "version: 2\n"}), {}, ["`.github/dependabot.yml`", "`.github/**`"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_change_is_refused(origin, clone, case):
    edit, limits, expected = REFUSALS[case]
    base, patch = origin.patch(edit)
    reason = refused(clone, origin, base, patch, limits=policy.Limits(blocked_paths=(".github/**",), **limits))
    for part in expected:
        assert part in reason, reason


def test_repository_may_allow_binaries_and_gitattributes(origin, clone):
    base, patch = origin.patch(writes({"assets/logo.bin": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
                                       ".gitattributes": "*.bin binary\n"}))
    push(clone, base, patch, limits=policy.Limits(allow_binary=True, allow_gitattributes=True))
    assert origin.file(".gitattributes") == "*.bin binary"


def test_existing_escaping_symlink_does_not_block_other_changes(tmp_path):
    origin = Origin(tmp_path, FILES)
    origin.commit(symlink("sys-passwd", "/etc/passwd"), "a person's own choice")
    clone = Clone(url=origin.url, token=TOKEN, branch=BRANCH, author=AUTHOR)
    try:
        clone.clone()
        base, patch = origin.patch(writes({"src/new.py": "x = 1\n"}))
        push(clone, base, patch)
        assert origin.file("src/new.py") == "x = 1"
    finally:
        clone.cleanup()


def test_precheck_refuses_early_from_the_patch_text(origin):
    _, patch = origin.patch(writes({".github/workflows/ci.yml": "on: push\n"}))
    refusal = policy.precheck(patch, policy.Limits(blocked_paths=(".github/workflows/**",)))
    assert refusal and "blocked path `.github/workflows/**`" in refusal.reason
    assert policy.precheck(patch, policy.Limits(blocked_paths=("docs/**",))) is None


# -- secrets, however they are dressed up ---------------------------------------------------------

def decoy() -> str:
    return f"decoy-{secrets.token_hex(16)}"


def pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def b64(prefix: bytes, value: str, url: bool = False) -> str:
    raw = prefix + value.encode() + b"!?"
    return (base64.urlsafe_b64encode(raw) if url else base64.b64encode(raw)).decode()


def split_variables(body: str) -> str:
    body = body[500:]  # well after the public modulus
    pieces = [body[i:i + 30] for i in range(0, len(body), 30)]
    return "\n".join(f"part_{i} = \"{p}\"" for i, p in enumerate(pieces)) + "\nkey = " + " + ".join(
        f"part_{i}" for i in range(len(pieces))) + "\n"


ENCODINGS: dict[str, Callable[[str], dict[str, str | bytes]]] = {
    "verbatim": lambda s: {"config.py": f"SECRET = '{s}'\n"},
    "reversed": lambda s: {"config.py": f"SECRET = '{s[::-1]}'[::-1]\n"},
    "base64 aligned 0": lambda s: {"data.txt": b64(b"", s) + "\n"},
    "base64 aligned 1": lambda s: {"data.txt": b64(b"a", s) + "\n"},
    "base64 aligned 2": lambda s: {"data.txt": b64(b"ab", s) + "\n"},
    "base64url aligned 0": lambda s: {"data.txt": b64(b"", s, url=True) + "\n"},
    "base64url aligned 1": lambda s: {"data.txt": b64(b"?", s, url=True) + "\n"},
    "base64url aligned 2": lambda s: {"data.txt": b64(b"?>", s, url=True) + "\n"},
    "hex": lambda s: {"data.txt": s.encode().hex() + "\n"},
    "HEX": lambda s: {"data.txt": s.encode().hex().upper() + "\n"},
    "split into strings": lambda s: {"config.py": "S = (" + " ".join(f'"{s[i:i + 5]}"' for i in range(0, len(s), 5))
                                     + ")\n"},
    "escaped bytes": lambda s: {"config.py": "S = b'" + "".join(f"\\x{b:02x}" for b in s.encode()) + "'\n"},
    "UTF-16 text": lambda s: {"notes.txt": s.encode("utf-16-le")},
    "in a file name": lambda s: {f"cache/{s}.txt": "x\n"},
    "gzip blob": lambda s: {"dump.gz": gzip.compress(f"token={s}\n".encode())},
    "zlib blob": lambda s: {"dump.z": zlib.compress(f"token={s}\n".encode())},
    "gzip as base64 in source": lambda s: {"blob.py": "DATA = '" + base64.b64encode(
        gzip.compress(s.encode(), mtime=0)).decode() + "'\n"},
}
BINARY = {"gzip blob", "zlib blob", "UTF-16 text"}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_own_secret_is_refused_in_every_encoding(origin, clone, encoding):
    secret = decoy()
    base, patch = origin.patch(writes(ENCODINGS[encoding](secret)))
    reason = refused(clone, origin, base, patch, secrets=["unrelated-secret-" + secrets.token_hex(8), secret],
                     limits=policy.Limits(allow_binary=encoding in BINARY))
    assert "secret" in reason and secret not in reason and secret[6:30] not in reason


PEM_CASES: dict[str, Callable[[str], dict[str, str | bytes]]] = {
    "whole key": lambda pem: {"key.pem": pem.replace("PRIVATE KEY", "KEY")},
    "body only": lambda pem: {"key.txt": pem_body(pem)},
    "body in JSON": lambda pem: {"key.json": '{"k": "' + "\\n".join(pem.splitlines()[1:-1]) + '"}\n'},
    "body split across variables": lambda pem: {"k.py": split_variables(pem_body(pem))},
    "body re-wrapped": lambda pem: {"k.txt": "\n".join(pem_body(pem)[i:i + 50] for i in range(0, 1600, 50))},
    "DER, gzipped": lambda pem: {"k.der.gz": gzip.compress(base64.b64decode(pem_body(pem)))},
    "base64 of the PEM file": lambda pem: {"k.b64": base64.b64encode(pem.replace("PRIVATE KEY", "K").encode()).decode()},
}


@pytest.mark.parametrize("case", list(PEM_CASES))
def test_app_private_key_is_refused_however_it_is_cut(origin, clone, case):
    pem = pem_key()
    base, patch = origin.patch(writes(PEM_CASES[case](pem)))
    reason = refused(clone, origin, base, patch, secrets=[pem], limits=policy.Limits(allow_binary=True))
    assert "secret" in reason and pem_body(pem)[100:130] not in reason


def test_the_app_public_key_is_not_mistaken_for_the_private_key(origin, clone):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other = pem_body(pem_key())[:600]  # another key's boilerplate and modulus
    base, patch = origin.patch(writes({"keys/app.pub": public, "notes.txt": other}))
    push(clone, base, patch, secrets=[pem])
    assert origin.file("keys/app.pub").startswith("-----BEGIN PUBLIC KEY-----")


SHAPES = {
    "GitHub token": "ghs_" + "A1b2C3d4" * 5,
    "Anthropic key": "sk-ant-api03-" + "Zz9_" * 8,
    "PEM header": "-----BEGIN RSA PRIVATE KEY-----",
    "AWS key": "AKIA" + "QWERTYUIOP234567",
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_secret_shapes_are_refused_in_applied_content(origin, clone, shape):
    base, patch = origin.patch(writes({"conf/settings.txt": f"value = {SHAPES[shape]}\n"}))
    reason = refused(clone, origin, base, patch)
    assert "`conf/settings.txt`" in reason and "looks like" in reason and SHAPES[shape] not in reason


def test_installation_token_is_always_scanned_for(origin, clone):
    base, patch = origin.patch(writes({"x.txt": base64.b64encode(TOKEN.encode()).decode() + "\n"}))
    assert "secret" in refused(clone, origin, base, patch)


def test_secret_already_in_the_file_does_not_block_edits(origin, clone):
    base, patch = origin.patch(writes({"docs/keys.md": FILES["docs/keys.md"] + "More notes.\n"}))
    push(clone, base, patch)
    assert origin.file("docs/keys.md").endswith("More notes.")


def test_compression_bomb_is_refused(origin, clone):
    base, patch = origin.patch(writes({"bomb.gz": gzip.compress(b"\0" * 3_000_000)}))
    reason = refused(clone, origin, base, patch, limits=policy.Limits(allow_binary=True, max_inflated_bytes=1_000_000))
    assert "`bomb.gz`" in reason and "expands" in reason


def test_secrets_from_settings():
    from app.config import Settings

    pem = pem_key()
    settings = Settings(webhook_secret="whsec-" + "1" * 20, github_private_key=pem.replace("\n", "\\n"),
                        anthropic_api_key="sk-ant-" + "2" * 30, daytona_api_key="dtn_" + "3" * 30)
    found = policy.secrets_from_settings(settings, extra=[TOKEN, None, ""])
    assert {TOKEN, "whsec-" + "1" * 20, pem, "sk-ant-" + "2" * 30, "dtn_" + "3" * 30} <= set(found)
    unset = Settings(github_private_key_path="/nonexistent/key.pem", webhook_secret=None, anthropic_api_key=None,
                     daytona_api_key=None)
    assert policy.secrets_from_settings(unset, extra=[TOKEN]) == [TOKEN]


def test_applied_paths_are_checked_not_the_patch_text(origin, clone):
    """A plain (non-git) unified diff: `git apply` strips the first path component, so the file lands
    in `.github/workflows/` although no line of the patch text starts with `a/.github`."""
    patch = ("--- x/.github/workflows/ci.yml\n+++ x/.github/workflows/ci.yml\n"
             "@@ -0,0 +1 @@\n+on: push\n")
    limits = policy.Limits(blocked_paths=(".github/**",))
    assert policy.precheck(patch, limits) is None  # the text check is fooled
    reason = refused(clone, origin, origin.head(), patch, limits=limits)
    assert "`.github/workflows/ci.yml`" in reason and "blocked path `.github/**`" in reason
