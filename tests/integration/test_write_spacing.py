"""Content-creating writes are spaced per installation across processes (app/github/write_slots.py):
separate OS processes posting for one installation at the same moment reach the GitHub stand-in about a
second apart, another installation's writes are not held up by them, and without the database a write
is still sent, spaced within its process."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.github import client, write_slots
from app.github.client import WRITE_SPACING_SECONDS, installation_client
from tests.support.env import ROOT

# One process of omoi that posts `n` comments for one installation, all at once, when the test says go
# (each has imported omoi and holds its token by then, so the bursts really coincide).
_POSTER = """
import asyncio, pathlib, sys, time
from app.config import get_settings
from app.github.client import installation_client

installation, repo, n, tag, folder = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], pathlib.Path(sys.argv[5])

async def main():
    async with installation_client(get_settings(), installation) as gh:
        await gh.getitem(f"/repos/{repo}/issues/1")
        (folder / f"ready-{tag}").touch()
        while not (folder / "go").exists():
            await asyncio.sleep(0.005)
        for i in range(n):
            await gh.post(f"/repos/{repo}/issues/1/comments", data={"body": f"{tag}-{i}"})

asyncio.run(main())
"""


@pytest.fixture
def two_installations(github_env, fake_github):
    for installation, repo in ((7, "octo/hello"), (8, "other/world")):
        fake_github.add_installation(installation, repo.split("/")[0])
        fake_github.add_repo(repo, installation_id=installation, files={"README.md": "hi\n"})
        fake_github.add_issue(repo, 1, title="t", user="alice")
    return fake_github


def _posts(fake, repo: str) -> list[float]:
    return sorted(c.at for c in fake.calls_matching("POST", rf"^/repos/{repo}/issues/1/comments$") if c.status == 201)


def test_processes_share_one_queue_per_installation(two_installations, github_env, tmp_path):
    fake = two_installations
    env = {**os.environ, **github_env, "PYTHONPATH": str(ROOT)}
    jobs = [(7, "octo/hello", 2, "a"), (7, "octo/hello", 2, "b"), (7, "octo/hello", 2, "c"), (8, "other/world", 2, "d")]
    procs = [subprocess.Popen([sys.executable, "-c", _POSTER, str(i), repo, str(n), tag, str(tmp_path)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i, repo, n, tag in jobs]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{tag}").exists() for *_, tag in jobs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                [p.communicate()[0].decode(errors="replace")[-2000:] for p in procs if p.poll() is not None]
            time.sleep(0.01)
        go = time.monotonic()
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=30)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * len(procs), outputs

    one = _posts(fake, "octo/hello")
    assert len(one) == 6 and len(fake.issue_comments("octo/hello", 1)) == 6
    gaps = [b - a for a, b in zip(one, one[1:])]
    # three processes' bursts for installation 7, interleaved but one at a time, a second apart
    assert min(gaps) >= 0.9 * WRITE_SPACING_SECONDS, gaps
    assert one[0] - go < 1.0  # the first of them did not wait
    other = _posts(fake, "other/world")
    assert len(other) == 2
    # installation 8's writes are spaced from each other, but not queued behind installation 7's five
    assert other[1] - other[0] >= 0.9 * WRITE_SPACING_SECONDS
    assert other[1] - go < 3 * WRITE_SPACING_SECONDS < one[-1] - go


async def test_without_the_database_writes_are_spaced_within_the_process(two_installations, monkeypatch):
    warnings = []

    class Log:
        def warning(self, event, **fields):
            warnings.append(event)

    def unreachable(*args):
        raise OperationalError("reserve", {}, Exception("connection refused"))

    monkeypatch.setattr(client, "log", Log())
    monkeypatch.setattr(client, "_slots_down", False)
    monkeypatch.setattr(write_slots, "reserve", unreachable)
    async with installation_client(get_settings(), 7) as gh:
        for n in range(3):
            await gh.post("/repos/octo/hello/issues/1/comments", data={"body": f"c{n}"})
    one = _posts(two_installations, "octo/hello")
    assert len(one) == 3  # every write sent
    assert min(b - a for a, b in zip(one, one[1:])) >= 0.9 * WRITE_SPACING_SECONDS
    assert warnings == ["github_write_slots_unavailable"]  # once for the outage, not per write
