"""omoi's push is idempotent per task, against the GitHub stand-in's real git: a worker killed after
pushing leaves its commit on the branch, and the next attempt finds it by its trailer."""
from __future__ import annotations

from app.execution.gitwork import Clone, commit_and_push
from tests.support.env import APP_ID, BOT_AUTHOR
from tests.support.world import APPROVED

REPO, INSTALLATION, BRANCH, FILES = APPROVED.repo, APPROVED.installation, APPROVED.branch, APPROVED.files


async def test_push_is_idempotent_per_task(fake_github, rsa_keypair):
    """A worker killed after pushing: the next attempt finds its commit by trailer and pushes nothing new."""
    import asyncio

    from app.config import Settings
    from app.github.client import installation_client

    fake = fake_github
    fake.add_installation(INSTALLATION, "octo")
    fake.add_repo(REPO, installation_id=INSTALLATION, files=FILES)
    fake.push_human_commit(REPO, BRANCH, {"x.txt": "x\n"}, "start")
    settings = Settings(github_app_id=str(APP_ID), github_private_key=rsa_keypair[0], github_api_url=fake.url)
    async with installation_client(settings, INSTALLATION) as gh:
        token = gh.oauth_token
    base = fake.branch_sha(REPO, BRANCH)
    patch = "diff --git a/y.txt b/y.txt\nnew file mode 100644\n--- /dev/null\n+++ b/y.txt\n@@ -0,0 +1 @@\n+y\n"
    results = []
    for _ in range(2):
        clone = Clone(url=fake.clone_url(REPO), token=token, branch=BRANCH, author=BOT_AUTHOR)
        await asyncio.to_thread(clone.clone)
        results.append(await asyncio.to_thread(commit_and_push, clone, base_sha=base, patch=patch,
                                               message="T1: y\n\nOmoi-Task: 9/T1\n", task_key="9/T1"))
        clone.cleanup()
    assert [r.existing for r in results] == [False, True] and results[0].sha == results[1].sha
    assert sum("Omoi-Task: 9/T1" in c["message"] for c in fake.commits(REPO, BRANCH)) == 1
    assert fake.violations == []

