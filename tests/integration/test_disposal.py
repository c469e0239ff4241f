"""app/sandbox/disposal.py: a destroyed sandbox or cleaned-up clone is gone from its path at once and
from the disk soon after, without following what the agent left in it; what a dead process left in
the trash is swept by housekeeping (tests/e2e/test_supervision.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.execution.gitwork import Clone
from app.sandbox import disposal
from app.sandbox.local import LocalSandboxProvider, bwrap_available


def _emptied(trash: Path, prefix: str = "", timeout: float = 15) -> list[str]:
    """What of `prefix`* is still in `trash` once the reaper had `timeout` seconds (empty: all removed)."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p.name for p in trash.iterdir() if p.name.startswith(prefix)) if trash.exists() else []
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.parametrize("use_bwrap", [True, False], ids=["jailed", "plain"])
async def test_a_destroyed_sandbox_is_gone_at_once_and_removed_without_following_its_links(tmp_path, source_repo,
                                                                                          use_bwrap):
    if use_bwrap and not bwrap_available():
        pytest.skip("bubblewrap missing or not working here (CI installs it)")
    outside = tmp_path / "host-data"
    outside.mkdir()
    (outside / "keep.txt").write_text("the host's file")
    provider = LocalSandboxProvider(base_dir=tmp_path / "sandboxes", use_bwrap=use_bwrap)
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="spec-1/T1")
    # what a hostile agent leaves behind: links out of the sandbox, a directory it may not write
    res = await sb.exec(f"ln -s {outside} escape && ln -s {outside}/keep.txt file-link && mkdir -p ro/deep "
                        "&& touch ro/deep/x && chmod 500 ro/deep && chmod 500 ro", timeout=20)
    assert res.ok, res.stderr
    root = sb.root
    await sb.destroy()
    assert not root.exists()  # nothing finds it under its old name any more
    assert _emptied(root.parent / disposal.TRASH, prefix=root.name) == []  # (the jails' base dir is shared)
    assert (outside / "keep.txt").read_text() == "the host's file"


def test_a_cleaned_up_clone_is_gone_at_once_and_removed_soon(tmp_path):
    clone = Clone(url="https://example.invalid/o/r.git", token="t", branch="b", author=("omoi", "omoi@example.invalid"))
    path = clone.path
    (path / "repo" / "objects").mkdir(parents=True)
    (path / "repo" / "objects" / "blob").write_bytes(b"x" * 4096)
    clone.cleanup()
    assert not path.exists()
    assert _emptied(path.parent / disposal.TRASH, prefix=path.name) == []
    clone.cleanup()  # twice: nothing left to do, no error


def test_dispose_falls_back_to_removing_in_place_when_it_cannot_rename(tmp_path):
    parent = tmp_path / "parent"
    victim = parent / "omoi-commit-x"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub" / "f").write_text("data")
    (parent / disposal.TRASH).write_text("a file where the trash directory should be")
    disposal.dispose(victim)
    assert not victim.exists()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_removes_what_it_disposes(tmp_path):
    """Celery's prefork pool: the child starts its own reaper (the parent's thread is not copied)."""
    disposal.dispose(_made(tmp_path / "first"))  # the parent's reaper runs
    victim = _made(tmp_path / "second")
    pid = os.fork()
    if pid == 0:  # the child: dispose, wait for the removal, report by exit code
        try:
            disposal.dispose(victim)
            os._exit(0 if _emptied(victim.parent / disposal.TRASH) == [] else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not victim.exists()


def _made(path: Path) -> Path:
    (path / "d").mkdir(parents=True)
    (path / "d" / "f").write_text("x")
    return path
