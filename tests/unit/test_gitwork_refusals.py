"""omoi's commit clone against a hostile patch: the change is applied, then inspected in omoi's
index (never believed from the patch text); symlinks out of the tree, binaries, .gitattributes,
submodules, oversized changes and blocked paths are refused and nothing is pushed.

Real git throughout (tests/support/gitwork.py), as in tests/unit/test_gitwork_clone.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from app.execution import policy
from app.execution.gitwork import Clone
from tests.support.gitrepos import git
from tests.support.gitwork import AUTHOR, BRANCH, FILES, TOKEN, Origin, push, refused, symlink, writes


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
    assert refusal and "blocked path `.github/workflows/**`" in str(refusal.reason)
    assert policy.precheck(patch, policy.Limits(blocked_paths=("docs/**",))) is None
