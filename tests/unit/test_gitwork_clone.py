"""omoi's commit clone against a hostile repository: the clone is private and bare, a normal patch
is committed and pushed (rebased onto a moved branch and checked again), and hooks, fsmonitor,
helpers and filter/diff/merge drivers planted in the clone's own config never run.

Real git throughout (tests/support/gitwork.py): a bare repository is `origin` (file:// URL), patches
are made by `git diff --binary` in a scratch clone exactly as a sandbox makes them, and
app/execution/gitwork.py commits and pushes. Planted hooks and drivers would write a marker file; the
tests assert that it never appears.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from app.execution import policy
from app.execution.gitwork import ApplyFailed, Clone, private_parent
from tests.support.gitrepos import git
from tests.support.gitwork import AUTHOR, BRANCH, FILES, TOKEN, Origin, push, symlink, writes


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
    words = str(info.value.reason)
    assert "`docs/pw`" in words and "outside" in words and origin.head() == before


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
