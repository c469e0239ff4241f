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


async def test_sandboxes_copied_from_the_mirror_ask_nothing_of_the_repository(auth_git_server, source_repo, tmp_path):
    plain, with_token = _urls(auth_git_server)
    served = tmp_path / "served" / "repo.git"
    git(served, "tag", "-a", "v2", "-m", "release two", source_repo.main)  # an annotated tag too
    git(served, "update-server-info")
    mirror = Mirror(plain)
    mirror.update(TOKEN)
    asked = len(auth_git_server.seen)
    provider = LocalSandboxProvider(base_dir=tmp_path / "sandboxes")
    first = await provider.create(repo_url=with_token, ref=source_repo.main, label="spec-1/T1")
    second = await provider.create(repo_url=with_token, ref=source_repo.feature, label="spec-1/T2")
    try:
        assert len(auth_git_server.seen) == asked  # not one request: the mirror had the commits
        assert (first.base_sha, second.base_sha) == (source_repo.main, source_repo.feature)
        assert await _origin_and_head(first) == [plain, source_repo.main]
        assert await _origin_and_head(second) == [plain, source_repo.feature]
        assert (Path(first.workdir) / "src" / "app.py").read_text() == "print('v2')\n"
        assert not (Path(first.workdir) / "feature.txt").exists() and (Path(second.workdir) / "feature.txt").exists()
        for sb in (first, second):
            assert files_containing(Path(sb.workdir), TOKEN) == []
            assert files_containing(Path(sb.workdir), str(mirror.path)) == []  # nothing points at the mirror
            res = await sb.exec("git fsck --no-progress --strict && git for-each-ref --format='%(refname)' "
                                "&& git cat-file -p v2 && git status --porcelain", timeout=30)
            assert res.ok, res.stderr
            assert "refs/remotes/origin/feature" in res.stdout and "refs/remotes/origin/main" in res.stdout
            assert "refs/tags/v1" in res.stdout and "release two" in res.stdout
        # one pack for the mirror's state, made once and copied into both
        states = list(mirror.path.with_suffix(".packs").iterdir())
        assert len(states) == 1 and len(list(states[0].glob("pack-*.pack"))) == 1
    finally:
        await first.destroy()
        await second.destroy()


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
    # the mirror catches up: sandboxes come from a pack of its new state; old states are pruned
    mirror = Mirror(plain)
    for n in range(3):
        mirror.update(TOKEN)
        asked = len(auth_git_server.seen)
        sb = await LocalSandboxProvider(base_dir=tmp_path / "sandboxes").create(
            repo_url=with_token, ref=later, label=f"spec-1/T{n + 3}")
        try:
            assert len(auth_git_server.seen) == asked and sb.base_sha == later
        finally:
            await sb.destroy()
        (source_repo.path / f"more{n}.txt").write_text("more\n")  # a new state for the next round
        git(source_repo.path, "add", "-A")
        git(source_repo.path, "commit", "-qm", f"more {n}")
        git(source_repo.path, "push", "-q", str(served), "main")
        git(served, "update-server-info")
    assert len(list(mirror.path.with_suffix(".packs").iterdir())) == 2


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
