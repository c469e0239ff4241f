"""The GitHub stand-in's CI of another app (tests/fakes/github/rest/ci.py): check runs with output and
annotations, the annotations endpoint (through gidgethub, like omoi), the completed-check payloads,
and GitHub's refusals (422 for an invalid run, 404 for an unknown one)."""
from __future__ import annotations

import aiohttp
import gidgethub
import gidgethub.apps
import pytest
from gidgethub.aiohttp import GitHubAPI

from tests.fakes.github import FakeGitHub
from tests.fakes.github.rest.ci import (
    add_check_run,
    check_run_completed_payload,
    check_suite_completed_payload,
)
from tests.fakes.github.routing import ApiError

APP_ID, INSTALLATION, REPO = 123, 77, "octo/hello"
NOTE = {"path": "x.py", "start_line": 1, "end_line": 1, "annotation_level": "failure", "message": "boom"}


@pytest.fixture
def fake(rsa_keypair):
    with FakeGitHub(app_id=APP_ID, app_slug="omoi-test", public_key_pem=rsa_keypair[1]) as gh:
        gh.add_installation(INSTALLATION, "octo")
        gh.add_repo(REPO, installation_id=INSTALLATION, files={"x.py": "x = 1\n"})
        gh.push_human_commit(REPO, "omoi/issue-1-x", {"x.py": "x = 2\n"}, "change x")
        yield gh


def test_invalid_check_runs_are_refused(fake):
    head = fake.branch_sha(REPO, "omoi/issue-1-x")
    for kwargs in ({"head_sha": "f" * 40, "name": "ci", "conclusion": "failure"},   # no such commit
                   {"head_sha": head, "name": "", "conclusion": "failure"},
                   {"head_sha": head, "name": "ci", "conclusion": None},            # completed without one
                   {"head_sha": head, "name": "ci", "conclusion": "broken"},
                   {"head_sha": head, "name": "ci", "status": "done"},
                   {"head_sha": head, "name": "ci", "conclusion": "failure", "output": {"title": "t"}},
                   {"head_sha": head, "name": "ci", "conclusion": "failure",
                    "output": {"title": "t", "summary": "s", "annotations": [{**NOTE, "annotation_level": "error"}]}},
                   {"head_sha": head, "name": "ci", "conclusion": "failure",
                    "output": {"title": "t", "summary": "s", "annotations": [NOTE] * 51}}):
        with pytest.raises(ApiError) as info:
            add_check_run(fake, REPO, **kwargs)
        assert info.value.status == 422, kwargs
    assert fake.check_runs(REPO) == []


async def test_annotations_and_payloads(fake, rsa_keypair):
    head = fake.branch_sha(REPO, "omoi/issue-1-x")
    pr = fake.add_pull_request(REPO, head="omoi/issue-1-x", title="x", user="omoi-test[bot]", draft=True)
    run = add_check_run(fake, REPO, head_sha=head, name="ci / test", conclusion="failure",
                        output={"title": "1 failed", "summary": "s", "text": "t", "annotations": [NOTE]})
    assert run["app"]["slug"] == "github-actions" and run["output"]["annotations_count"] == 1
    async with aiohttp.ClientSession() as session:
        app_gh = GitHubAPI(session, "omoi-tests", base_url=fake.url)
        token = await gidgethub.apps.get_installation_access_token(
            app_gh, installation_id=str(INSTALLATION), app_id=str(APP_ID), private_key=rsa_keypair[0])
        gh = GitHubAPI(session, "omoi-tests", oauth_token=token["token"], base_url=fake.url)
        url = "/repos/octo/hello/check-runs/{id}/annotations"
        notes = [a async for a in gh.getiter(url, {"id": run["id"]})]
        assert [(a["path"], a["start_line"], a["annotation_level"], a["message"]) for a in notes] == [
            ("x.py", 1, "failure", "boom")]
        with pytest.raises(gidgethub.BadRequest) as info:
            await gh.getitem(url, {"id": 999999})
        assert info.value.status_code == 404
        listed = await gh.getitem("/repos/octo/hello/commits/{ref}/check-runs", {"ref": head})
        assert [r["name"] for r in listed["check_runs"]] == ["ci / test"]

    suite = check_suite_completed_payload(fake, REPO, INSTALLATION, head)["check_suite"]
    assert (suite["head_sha"], suite["head_branch"], suite["conclusion"]) == (head, "omoi/issue-1-x", "failure")
    assert [p["number"] for p in suite["pull_requests"]] == [pr["number"]] and suite["app"]["id"] != APP_ID
    payload = check_run_completed_payload(fake, REPO, INSTALLATION, run)
    assert payload["action"] == "completed" and payload["check_run"]["check_suite"]["head_branch"] == "omoi/issue-1-x"
    add_check_run(fake, REPO, head_sha=head, name="ci / lint", status="in_progress")
    with pytest.raises(ValueError):  # a suite completes only when all of its runs have
        check_suite_completed_payload(fake, REPO, INSTALLATION, head)
