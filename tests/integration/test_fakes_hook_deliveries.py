"""The GitHub stand-in's webhook delivery log: send_webhook, GET /app/hook/deliveries (cursor
pagination) and POST /app/hook/deliveries/{id}/attempts (redelivery), driven through gidgethub."""

from __future__ import annotations

import json

import aiohttp
import gidgethub
import gidgethub.apps
import pytest
from gidgethub.aiohttp import GitHubAPI

from tests.fakes.github import FakeGitHub
from tests.fakes.webhooks import sign
from tests.support.servers import Receiver
from tests.support.services import free_port

APP_ID = 123
SECRET = "hook-secret"


@pytest.fixture
def fake(rsa_keypair):
    with FakeGitHub(app_id=APP_ID, app_slug="omoi-test", public_key_pem=rsa_keypair[1]) as gh:
        yield gh


def _payload(n: int) -> dict:
    return {"action": "labeled", "n": n, "installation": {"id": 77}, "repository": {"id": 555, "full_name": "o/r"}}


def _app_gh(session, fake: FakeGitHub, private_key: str) -> tuple[GitHubAPI, str]:
    jwt = gidgethub.apps.get_jwt(app_id=str(APP_ID), private_key=private_key)
    return GitHubAPI(session, "omoi-tests", base_url=fake.url), jwt


def test_send_webhook_records_what_github_records(fake, receiver):
    receiver.answers = [202, 503, 401]
    ok = fake.send_webhook(receiver.url, SECRET, "issues", _payload(1))
    five = fake.send_webhook(receiver.url, SECRET, "issues", _payload(2))
    bad = fake.send_webhook(receiver.url, "wrong", "issues", _payload(3), guid="fixed-guid")
    down = fake.send_webhook(f"http://127.0.0.1:{free_port()}/webhooks/github", SECRET, "issues", _payload(4))
    assert bad == "fixed-guid"

    log = {d["guid"]: d for d in fake.hook_deliveries()}
    assert [d["guid"] for d in fake.hook_deliveries()] == [ok, five, bad, down]  # oldest first
    assert (log[ok]["status"], log[ok]["status_code"]) == ("OK", 202)
    assert (log[five]["status"], log[five]["status_code"]) == ("Invalid HTTP Response: 503", 503)
    assert log[bad]["status_code"] == 401
    assert (log[down]["status"], log[down]["status_code"]) == ("failed to connect to host", 0)
    first = log[ok]
    assert first["event"] == "issues" and first["action"] == "labeled" and first["redelivery"] is False
    assert first["installation_id"] == 77 and first["repository_id"] == 555 and first["duration"] >= 0

    # What the receiver saw: GitHub's headers, the guid as X-GitHub-Delivery, an HMAC over the exact body.
    headers, body = receiver.received[0]
    assert headers["X-GitHub-Delivery"] == ok and headers["X-GitHub-Event"] == "issues"
    assert headers["X-Hub-Signature-256"] == sign(body, SECRET)
    assert headers["X-GitHub-Hook-Installation-Target-ID"] == str(APP_ID)
    assert json.loads(body) == _payload(1)


async def test_list_paginates_by_cursor_newest_first_and_filters(fake, receiver, rsa_keypair):
    receiver.answers = [202, 500, 202, 404, 202]
    guids = [fake.send_webhook(receiver.url, SECRET, "issues", _payload(i)) for i in range(5)]
    async with aiohttp.ClientSession() as session:
        gh, jwt = _app_gh(session, fake, rsa_keypair[0])
        items = [d async for d in gh.getiter("/app/hook/deliveries?per_page=2", jwt=jwt)]
        assert [d["guid"] for d in items] == guids[::-1]
        pages = fake.calls_matching("GET", r"^/app/hook/deliveries$")
        assert len(pages) == 3 and "cursor" not in pages[0].query and pages[1].query["cursor"].startswith("v1_")
        assert all(c.query["per_page"] == "2" for c in pages)

        failures = [d async for d in gh.getiter("/app/hook/deliveries?status=failure", jwt=jwt)]
        assert sorted(d["status_code"] for d in failures) == [404, 500]
        successes = [d async for d in gh.getiter("/app/hook/deliveries?status=success", jwt=jwt)]
        assert len(successes) == 3

        one = await gh.getitem(f"/app/hook/deliveries/{items[0]['id']}", jwt=jwt)
        assert one["request"]["payload"] == _payload(4) and one["url"] == receiver.url
        assert one["request"]["headers"]["X-GitHub-Delivery"] == guids[4]

        # App JWT only; a bad cursor is a 400.
        with pytest.raises(gidgethub.BadRequest) as exc:
            await GitHubAPI(session, "t", oauth_token="ghs_nope", base_url=fake.url).getitem("/app/hook/deliveries")
        assert exc.value.status_code == 401
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.getitem("/app/hook/deliveries?cursor=garbage", jwt=jwt)
        assert exc.value.status_code == 400
    assert fake.violations == []


async def test_redelivery_sends_the_same_delivery_again_to_the_same_place(fake, rsa_keypair):
    down_port = free_port()
    other = Receiver()
    revived = None
    try:
        guid = fake.send_webhook(f"http://127.0.0.1:{down_port}/hook", SECRET, "issue_comment", _payload(1))
        elsewhere = fake.send_webhook(other.url, "other-secret", "issues", _payload(2))
        [failed] = fake.hook_deliveries(guid)
        async with aiohttp.ClientSession() as session:
            gh, jwt = _app_gh(session, fake, rsa_keypair[0])
            # Still down: the redelivery fails too and is logged as a new attempt of the same guid.
            assert await gh.post(f"/app/hook/deliveries/{failed['id']}/attempts", data=b"", jwt=jwt) == {}
            fake.wait_for_redeliveries()
            attempts = fake.hook_deliveries(guid)
            assert [(a["redelivery"], a["status_code"]) for a in attempts] == [(False, 0), (True, 0)]
            assert attempts[1]["id"] > attempts[0]["id"] and attempts[1]["event"] == "issue_comment"

            # Once the original URL answers, a redelivery of the newest attempt reaches it: same bytes,
            # same guid, signed with that delivery's secret (not the other hook's).
            revived = Receiver(port=down_port)
            await gh.post(f"/app/hook/deliveries/{attempts[1]['id']}/attempts", data=b"", jwt=jwt)
            fake.wait_for_redeliveries()
            assert [(a["redelivery"], a["status"]) for a in fake.hook_deliveries(guid)][-1] == (True, "OK")
            [(headers, body)] = revived.received
            assert headers["X-GitHub-Delivery"] == guid and headers["X-GitHub-Event"] == "issue_comment"
            assert headers["X-Hub-Signature-256"] == sign(body, SECRET) and json.loads(body) == _payload(1)
            assert other.received[0][0]["X-Hub-Signature-256"] == sign(other.received[0][1], "other-secret")
            assert len(other.received) == 1 and elsewhere != guid

            with pytest.raises(gidgethub.BadRequest) as exc:
                await gh.post("/app/hook/deliveries/999/attempts", data=b"", jwt=jwt)
            assert exc.value.status_code == 404
        assert fake.redelivery_requests() == [failed["id"], attempts[1]["id"]]
        assert fake.redelivery_requests(elsewhere) == []
        assert fake.violations == []
    finally:
        other.close()
        if revived is not None:
            revived.close()
