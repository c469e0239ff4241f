"""The webhook endpoint in-process: signature, size, JSON, dedupe, health and metrics."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.web.server import MissingWebhookSecret, create_app
from tests.fakes.webhooks import headers_for, issues_labeled_payload, load_examples, sign
from tests.support.env import WEBHOOK_SECRET


@pytest.fixture
async def client(omoi_env, aiohttp_client):
    return await aiohttp_client(create_app(get_settings()))


def _payload(number=1):
    return issues_labeled_payload(
        installation_id=1, repo_full_name="octo/hello", issue_number=number, label="omoi", sender_login="alice"
    )


def _deliveries():
    with session_scope() as s:
        return s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


async def _post(client, event, body: bytes, delivery_id=None, secret=WEBHOOK_SECRET, headers=None):
    hdrs = headers if headers is not None else headers_for(event, body, secret, delivery_id)
    return await client.post("/webhooks/github", data=body, headers=hdrs)


async def test_signed_delivery_is_stored_queued_and_acknowledged(client):
    body = json.dumps(_payload()).encode()
    resp = await _post(client, "issues", body, delivery_id="d-1")
    assert resp.status == 202
    rows = _deliveries()
    assert [(r.delivery_id, r.event, r.action, r.status) for r in rows] == [("d-1", "issues", "labeled", "queued")]
    assert rows[0].payload["issue"]["number"] == 1


async def test_duplicate_delivery_id_is_200_and_stored_once(client):
    body = json.dumps(_payload()).encode()
    assert (await _post(client, "issues", body, delivery_id="d-dup")).status == 202
    second = await _post(client, "issues", body, delivery_id="d-dup")
    assert second.status == 200
    assert (await second.json())["status"] == "duplicate"
    assert len(_deliveries()) == 1


async def test_forged_signature_is_refused_and_nothing_stored(client):
    body = json.dumps(_payload()).encode()
    resp = await _post(client, "issues", body, secret="not-the-secret")
    assert resp.status == 401
    assert _deliveries() == []


async def test_unsigned_and_sha1_only_deliveries_are_refused(client):
    body = json.dumps(_payload()).encode()
    hdrs = headers_for("issues", body, WEBHOOK_SECRET)
    del hdrs["X-Hub-Signature-256"]
    assert (await _post(client, "issues", body, headers=hdrs)).status == 401
    hdrs["X-Hub-Signature"] = "sha1=" + "0" * 40
    assert (await _post(client, "issues", body, headers=hdrs)).status == 401
    assert _deliveries() == []


async def test_tampered_body_with_old_signature_is_refused(client):
    body = json.dumps(_payload()).encode()
    hdrs = headers_for("issues", body, WEBHOOK_SECRET)
    resp = await _post(client, "issues", body.replace(b"alice", b"mallory"), headers=hdrs)
    assert resp.status == 401


async def test_truncated_json_is_400_and_not_stored(client):
    body = json.dumps(_payload()).encode()[:-20]
    resp = await _post(client, "issues", body)
    assert resp.status == 400
    assert "JSON" in (await resp.json())["error"]
    assert _deliveries() == []


async def test_json_that_is_not_an_object_is_400(client):
    assert (await _post(client, "issues", b"[1, 2]")).status == 400


async def test_unknown_event_is_202_and_ignored(client):
    body = json.dumps({"action": "created", "zen": "x"}).encode()
    resp = await _post(client, "star", body)
    assert resp.status == 202
    assert (await resp.json())["status"] == "ignored"
    assert _deliveries() == []


async def test_ping_answers_pong(client):
    resp = await _post(client, "ping", json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode())
    assert resp.status == 200
    assert (await resp.json())["status"] == "pong"


async def test_25_mb_body_is_accepted_and_larger_is_413(client):
    limit = get_settings().max_webhook_bytes
    payload = _payload()
    skeleton = json.dumps({**payload, "padding": ""}).encode()
    payload["padding"] = "x" * (limit - len(skeleton))
    body = json.dumps(payload).encode()
    assert len(body) == limit
    resp = await _post(client, "issues", body, delivery_id="big")
    assert resp.status == 202
    too_big = body[:-1] + b' ,"more": 1}'
    resp = await _post(client, "issues", too_big, delivery_id="too-big")
    assert resp.status == 413
    assert [r.delivery_id for r in _deliveries()] == ["big"]


async def test_every_octokit_example_payload_is_accepted_without_5xx(client):
    examples = load_examples()
    assert len(examples) == 329
    statuses = {}
    for i, (event, payload) in enumerate(examples):
        resp = await _post(client, event, json.dumps(payload).encode(), delivery_id=f"ex-{i}")
        statuses.setdefault(resp.status, []).append(event)
    assert set(statuses) <= {200, 202}, {k: v[:5] for k, v in statuses.items()}
    # Stored: every example of an event omoi handles that names its installation (an App's deliveries
    # always do; the examples without one are repository webhooks, answered 202 "ignored").
    handled = [e for e, p in examples if e in {"issues", "issue_comment", "installation", "check_run"}
               and isinstance(p.get("installation"), dict)]
    with session_scope() as s:
        stored = s.scalar(select(func.count()).select_from(WebhookDelivery))
    assert stored >= len(handled) > 0


async def test_healthz_reports_database_and_broker(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "database": "ok", "broker": "ok"}


async def test_database_down_at_webhook_time_is_503_so_github_redelivers(omoi_env, aiohttp_client):
    settings = Settings(database_url="postgresql://omoi@127.0.0.1:1/nowhere")
    client = await aiohttp_client(create_app(settings))
    resp = await _post(client, "issues", json.dumps(_payload()).encode())
    assert resp.status == 503
    health = await client.get("/healthz")
    assert health.status == 503
    assert (await health.json())["database"].startswith("error")


async def test_metrics_count_deliveries(client):
    await _post(client, "issues", json.dumps(_payload()).encode(), delivery_id="m-1")
    await _post(client, "issues", b"{}", secret="forged")
    text = await (await client.get("/metrics")).text()
    assert 'omoi_webhook_deliveries_total{event="issues",outcome="queued"}' in text
    assert 'omoi_webhook_deliveries_total{event="-",outcome="bad_signature"}' in text
    assert "omoi_webhook_ack_seconds_bucket" in text


def test_missing_webhook_secret_refuses_to_start(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMOI_WEBHOOK_SECRET", raising=False)
    with pytest.raises(MissingWebhookSecret):
        create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db"))


def test_signature_helper_matches_github_documentation_example():
    # The worked example from GitHub's "Validating webhook deliveries" documentation.
    assert (
        sign(b"Hello, World!", "It's a Secret to Everybody")
        == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


async def test_a_delivery_after_the_database_dropped_the_writers_connection_is_stored(client, database_url):
    """The writer keeps one connection; when the database ends it (a restart, a failover), the next
    batch finds it dead, replaces it and is stored: 202, not a 503 for GitHub to redeliver."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    assert (await _post(client, "issues", json.dumps(_payload(1)).encode(), delivery_id="before")).status == 202
    from app.db.session import get_engine
    from sqlalchemy import text

    with get_engine(database_url).connect() as conn:
        ended = conn.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    assert ended >= 1  # the writer's connection at least
    resp = await _post(client, "issues", json.dumps(_payload(2)).encode(), delivery_id="after")
    assert resp.status == 202, await resp.text()
    assert [r.delivery_id for r in _deliveries()] == ["before", "after"]


async def test_a_stored_row_is_what_sqlalchemy_itself_would_store(client, database_url):
    """The writer binds its values itself (one statement per batch): the row must read back, and
    compare in SQL (the sweep's `received_at < cutoff`), as a row SQLAlchemy inserted."""
    from datetime import timedelta

    from sqlalchemy import insert, text

    from app.timeutil import as_utc, utc_now

    body = json.dumps(_payload()).encode()
    assert (await _post(client, "issues", body, delivery_id="by-writer")).status == 202
    with session_scope() as s:
        s.execute(insert(WebhookDelivery).values(delivery_id="by-sqlalchemy", event="issues", payload={},
                                                 status="queued", raw_body=b"\xff\x00"))
    with session_scope() as s:
        rows = {r.delivery_id: r for r in s.scalars(select(WebhookDelivery))}
        assert abs(as_utc(rows["by-writer"].received_at) - utc_now()) < timedelta(minutes=1)
        assert (rows["by-writer"].attempts, rows["by-writer"].raw_body) == (0, None)
        older = select(WebhookDelivery.delivery_id).where(WebhookDelivery.received_at < utc_now() + timedelta(seconds=30))
        assert sorted(s.scalars(older)) == ["by-sqlalchemy", "by-writer"]
        if database_url.startswith("sqlite"):  # stored as text: the same format, to the character
            stored = dict(s.execute(text("SELECT delivery_id, received_at FROM webhook_deliveries")).all())
            assert len(stored["by-writer"]) == len(stored["by-sqlalchemy"]), stored
