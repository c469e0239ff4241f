"""A local sandbox copied from omoi's host mirror (app/sandbox/clone.py): no request to the repository,
`origin` is the repository's credential-free URL, no token anywhere in it; a commit the mirror lacks
is cloned from the repository instead; an origin URL git must quote is still set right."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.sandbox.clone import Mirror
from app.sandbox.local import LocalSandboxProvider
from tests.support.gitrepos import TOKEN, files_containing, git, make_source_repo


@pytest.fixture(autouse=True)
def mirrors(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("OMOI_MIRROR_DIR", str(tmp_path / "mirrors"))
    return tmp_path / "mirrors"


def _urls(server) -> tuple[str, str]:
    plain = f"http://127.0.0.1:{server.port}/repo.git"
    return plain, plain.replace("http://", f"http://x-access-token:{TOKEN}@")


async def _origin_and_head(sb) -> list[str]:
    res = await sb.exec("git remote get-url origin && git rev-parse HEAD", timeout=20)
    assert res.ok, res.stderr
    return res.stdout.split()


async def test_a_sandbox_copied_from_the_mirror_asks_nothing_of_the_repository(auth_git_server, source_repo, tmp_path):
    plain, with_token = _urls(auth_git_server)
    Mirror(plain).update(TOKEN)
    asked = len(auth_git_server.seen)
    sb = await LocalSandboxProvider(base_dir=tmp_path / "sandboxes").create(
        repo_url=with_token, ref=source_repo.main, label="spec-1/T1")
    try:
        assert len(auth_git_server.seen) == asked  # not one request: the mirror had the commit
        assert sb.base_sha == source_repo.main
        assert await _origin_and_head(sb) == [plain, source_repo.main]
        assert (Path(sb.workdir) / "src" / "app.py").read_text() == "print('v2')\n"
        assert files_containing(Path(sb.workdir), TOKEN) == []
    finally:
        await sb.destroy()


async def test_a_commit_the_mirror_lacks_comes_from_the_repository(auth_git_server, source_repo, tmp_path):
    plain, with_token = _urls(auth_git_server)
    Mirror(plain).update(TOKEN)
    # the repository moves on after the mirror's fetch
    (source_repo.path / "later.txt").write_text("later\n")
    git(source_repo.path, "add", "-A")
    git(source_repo.path, "commit", "-qm", "later")
    later = git(source_repo.path, "rev-parse", "HEAD")
    served = tmp_path / "served" / "repo.git"
    git(source_repo.path, "push", "-q", str(served), "main")
    git(served, "update-server-info")
    asked = len(auth_git_server.seen)
    sb = await LocalSandboxProvider(base_dir=tmp_path / "sandboxes").create(
        repo_url=with_token, ref=later, label="spec-1/T2")
    try:
        assert len(auth_git_server.seen) > asked
        assert sb.base_sha == later
        assert await _origin_and_head(sb) == [plain, later]
        assert (Path(sb.workdir) / "later.txt").read_text() == "later\n"
        assert files_containing(Path(sb.workdir), TOKEN) == []
    finally:
        await sb.destroy()


async def test_an_origin_git_must_quote_is_set_by_git(tmp_path):
    odd = make_source_repo(tmp_path / "a repo; with #odd chars")
    sb = await LocalSandboxProvider(base_dir=tmp_path / "sandboxes").create(
        repo_url=str(odd.path), ref="main", label="spec-1/T3")
    try:
        res = await sb.exec("git remote get-url origin", timeout=20)
        assert res.stdout.rstrip("\n") == str(odd.path)
        assert sb.base_sha == odd.main
    finally:
        await sb.destroy()
