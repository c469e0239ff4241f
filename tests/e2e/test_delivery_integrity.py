"""A database row cannot become a command: the worker routes only what the webhook secret signed.

Whoever can write to the database (a shared SQLite file, a leaked database password) but does not
hold the webhook secret inserts rows here as an attacker would; the real worker must never route
them (nothing reaches the GitHub stand-in for them) and must end them `failed`. Both databases.
"""
from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Text, cast, insert, select, update

from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.intake.processing import INTEGRITY_FAILED
from app.timeutil import utc_now
from tests.fakes.webhooks import issues_labeled_payload, post_delivery, sign
from tests.support.env import WEBHOOK_SECRET
from tests.support.processes import send_sweep
from tests.support.waits import wait_for
from tests.support.world import Issue, Site

REPO = "octo/hello"
INSTALLATION = 77
VICTIM_REPO = "victim/secrets"
VICTIM_INSTALLATION = 88  # another installation of the App: the forged rows aim at it


SITE = Site(REPO, INSTALLATION, {"README.md": "# hello\n"}, people={"alice": "write"},
            issues={1: Issue("Add a greeting", "Say hello.", "alice"),
                    **{n: Issue(f"Another {n}", "Later.", "alice") for n in (2, 3, 4)}})
VICTIM = Site(VICTIM_REPO, VICTIM_INSTALLATION, {"README.md": "private\n"}, people={"mallory": "admin"},
              issues={1: Issue("Leak it", "Print every secret.", "mallory")})


@pytest.fixture
def omoi(fake_github, database_url, broker_url, omoi_world):
    procs = omoi_world(github=fake_github, site=SITE, database=database_url, broker=broker_url, start=False)
    VICTIM.seed(fake_github)
    return procs.start_all()


@pytest.fixture
def world(omoi):
    """The GitHub stand-in, with both installations."""
    return omoi.github


def _labeled(installation_id: int, repo: str, issue: int, sender: str) -> dict:
    return issues_labeled_payload(installation_id=installation_id, repo_full_name=repo, issue_number=issue,
                                  label="omoi", sender_login=sender)


def _body(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _columns(payload: dict) -> dict:
    from app.web.delivery import delivery_columns

    return delivery_columns(payload)


def _insert(url: str, **row) -> int:
    """What an attacker with write access to the database does: a row, straight in."""
    values = {"event": "issues", "status": "queued", "attempts": 0,
              "received_at": utc_now() - timedelta(hours=1), **row}  # old enough for the sweep
    with session_scope(url) as s:
        return s.execute(insert(WebhookDelivery).values(**values).returning(WebhookDelivery.id)).scalar_one()


def _row(url: str, delivery_id: str) -> SimpleNamespace | None:
    with session_scope(url) as s:
        row = s.scalars(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)).one_or_none()
        if row is None:
            return None
        return SimpleNamespace(**{c.key: getattr(row, c.key) for c in WebhookDelivery.__table__.columns})


def _signed_bytes(url: str, delivery_id: str) -> bytes:
    """What the row says GitHub signed: `raw_body`, or the payload column's text as stored."""
    with session_scope(url) as s:
        raw, text_ = s.execute(select(WebhookDelivery.raw_body, cast(WebhookDelivery.payload, Text))
                               .where(WebhookDelivery.delivery_id == delivery_id)).one()
    return bytes(raw) if raw is not None else text_.encode()


def _store_like_the_web_process(url: str, delivery_id: str, body: bytes, signature: str, event: str = "issues") -> int:
    """A row exactly as the web process stores it (its own writer, its own columns)."""
    from app.config import get_settings
    from app.db.session import get_engine
    from app.web.delivery import delivery_columns, payload_text
    from app.web.delivery_writer import DeliveryWriter

    payload = json.loads(body)
    text_, verbatim = payload_text(body, payload)
    row = {"delivery_id": delivery_id, "event": event, **delivery_columns(payload), "payload": text_,
           "status": "queued", "raw_body": None if verbatim else body, "signature": signature}
    engine = get_engine(url)
    with engine.begin() as conn:
        return [pk for pk, _ in DeliveryWriter(get_settings(), None)._insert(conn, engine, [row])][0]


def _forged_rows(genuine: SimpleNamespace, signed: bytes) -> dict[str, dict]:
    """Rows of every kind an attacker can write, by delivery id (`signed`: a genuine delivery's
    body, whose signature the attacker read from the database)."""
    victim = _labeled(VICTIM_INSTALLATION, VICTIM_REPO, 1, "mallory")
    victim_body = _body(victim)
    other_issue = _labeled(INSTALLATION, REPO, 2, "alice")
    genuine_payload = json.loads(signed)
    return {
        # a payload from another installation, no body, no signature
        "forged-unsigned": dict(payload=victim, **_columns(victim)),
        # body and payload agree, the signature is made up (or made with a guessed secret)
        "forged-bad-signature": dict(payload=victim, raw_body=victim_body, signature=sign(victim_body, "guess"),
                                     **_columns(victim)),
        "forged-garbage-signature": dict(payload=victim, raw_body=victim_body, signature="sha256=" + "0" * 64,
                                         **_columns(victim)),
        # a genuine old body and its valid signature, with a payload column that says something else
        "replayed-with-other-payload": dict(payload=other_issue, raw_body=signed,
                                            signature=genuine.signature, **_columns(other_issue)),
        # a valid old signature over a payload column that says something else (no raw body)
        "old-signature-other-payload": dict(payload=other_issue, signature=genuine.signature,
                                            **_columns(other_issue)),
        # genuine body, signature and payload; the indexed columns moved to another installation
        "replayed-with-other-columns": dict(payload=genuine_payload, raw_body=signed,
                                            signature=genuine.signature, action=genuine.action,
                                            installation_id=VICTIM_INSTALLATION, issue_key=genuine.issue_key),
        # genuine everything, under an event name the web process never stores
        "replayed-as-other-event": dict(event="membership", payload=genuine_payload, raw_body=signed,
                                        signature=genuine.signature, **_columns(genuine_payload)),
    }


def test_signed_delivery_is_routed_and_rows_written_into_the_database_are_not(omoi, world):
    # a delivery GitHub signed: stored with its body and signature, verified again, routed
    payload = _labeled(INSTALLATION, REPO, 1, "alice")
    status, _ = post_delivery(omoi.url + "/webhooks/github", "issues", payload, WEBHOOK_SECRET, delivery_id="genuine")
    assert status == 202
    wait_for(lambda: (r := _row(omoi.database_url, "genuine")) and r.status in ("done", "failed"), timeout=60,
             message=lambda: "the genuine delivery processed\n" + omoi.log_text("worker")[-3000:])
    genuine = _row(omoi.database_url, "genuine")
    assert genuine.status == "done", (genuine.error, omoi.log_text("worker")[-3000:])
    signed = _signed_bytes(omoi.database_url, "genuine")
    assert signed == _body(payload) and genuine.signature == sign(_body(payload), WEBHOOK_SECRET)
    assert genuine.raw_body is None  # a UTF-8 body is stored once: the payload column's text
    acks = [c for c in world.issue_comments(REPO, 1) if c["body"].startswith("<!-- omoi:ack")]
    assert len(acks) == 1

    # rows written straight into the database, then picked up by the worker's sweep
    forged = _forged_rows(genuine, signed)
    for delivery_id, row in forged.items():
        _insert(omoi.database_url, delivery_id=delivery_id, **row)
    send_sweep(omoi.env)  # the worker's own recovery sweep (Celery beat runs it every minute)
    for delivery_id in forged:
        wait_for(lambda: _row(omoi.database_url, delivery_id).status == "failed", timeout=60,
                 message=lambda: f"{delivery_id} failed\n" + omoi.log_text("worker")[-3000:])
        row = _row(omoi.database_url, delivery_id)
        assert (row.error, row.started_at) == (INTEGRITY_FAILED, None)
    # nothing reached GitHub for any of them: no token for the other installation, no comment, no call
    assert world.tokens_issued.get(VICTIM_INSTALLATION) is None
    assert world.issue_comments(VICTIM_REPO, 1) == []
    assert world.issue_comments(REPO, 2) == []
    aimed = [(c.method, c.path) for c in world.calls
             if "/victim/" in c.path or f"/installations/{VICTIM_INSTALLATION}/" in c.path or "/issues/2" in c.path]
    assert aimed == []
    worker_log = omoi.log_text("worker")
    for delivery_id in forged:
        assert "delivery_integrity_failed" in worker_log and delivery_id in worker_log

    # and the worker still routes the next genuine delivery
    status, _ = post_delivery(omoi.url + "/webhooks/github", "issues", _labeled(INSTALLATION, REPO, 2, "alice"),
                              WEBHOOK_SECRET, delivery_id="genuine-2")
    assert status == 202
    wait_for(lambda: (r := _row(omoi.database_url, "genuine-2")) and r.status == "done", timeout=60,
             message=lambda: "the second genuine delivery processed\n" + omoi.log_text("worker")[-3000:])
    assert len([c for c in world.issue_comments(REPO, 2) if c["body"].startswith("<!-- omoi:ack")]) == 1


def test_a_row_changed_after_it_was_stored_is_not_routed(omoi, world):
    """The web process stored a genuine delivery; its payload column is changed before the worker
    gets to it (the worker is stopped meanwhile). The worker routes nothing and fails the row."""
    omoi.stop("worker")
    payload = _labeled(INSTALLATION, REPO, 1, "alice")
    assert post_delivery(omoi.url + "/webhooks/github", "issues", payload, WEBHOOK_SECRET,
                         delivery_id="tampered")[0] == 202
    victim = _labeled(VICTIM_INSTALLATION, VICTIM_REPO, 1, "mallory")
    with session_scope(omoi.database_url) as s:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.delivery_id == "tampered")
                  .values(payload=victim, **_columns(victim)))
    omoi.start("worker", "worker")  # a starting worker sweeps what was stored but never finished
    wait_for(lambda: _row(omoi.database_url, "tampered").status in ("done", "failed"), timeout=60,
             message=lambda: "the tampered row handled\n" + omoi.log_text("worker")[-3000:])
    row = _row(omoi.database_url, "tampered")
    assert (row.status, row.error) == ("failed", INTEGRITY_FAILED)
    assert world.tokens_issued.get(VICTIM_INSTALLATION) is None
    assert world.issue_comments(VICTIM_REPO, 1) == [] and world.issue_comments(REPO, 1) == []
    assert not world.calls_matching("POST", r"/app/installations/")


def test_batched_deliveries_keep_their_own_body_and_signature(omoi):
    """Many deliveries at once go through the group-commit writer (one statement per batch; on
    PostgreSQL the `unnest` fast path): every row keeps its own bytes and signature."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = {}
    for i in range(24):
        payload = _labeled(INSTALLATION, REPO, 1 + i % 4, "alice")
        payload["issue"]["title"] = f"title {i} \u00e9\u2603"  # non-ASCII: the bytes, not a re-serialisation
        text_ = json.dumps(payload, indent=1 if i % 3 else None, ensure_ascii=False)
        # every fifth in UTF-16 (JSON allows it): not the payload column's text, so stored as bytes
        bodies[f"batch-{i}"] = text_.encode("utf-16") if i % 5 == 0 else text_.encode()
    omoi.stop("worker")

    def send(item):
        delivery_id, body = item
        return post_delivery(omoi.url + "/webhooks/github", "issues", body, WEBHOOK_SECRET, delivery_id=delivery_id)

    with ThreadPoolExecutor(len(bodies)) as pool:
        assert {status for status, _ in pool.map(send, bodies.items())} == {202}
    for delivery_id, body in bodies.items():
        row = _row(omoi.database_url, delivery_id)
        assert _signed_bytes(omoi.database_url, delivery_id) == body, delivery_id
        assert (row.raw_body is None) == (not body.startswith(b"\xff\xfe")), delivery_id
        assert row.signature == sign(body, WEBHOOK_SECRET)
        assert row.payload == json.loads(body)
    # and every one of them passes the worker's check
    from app.intake.processing import verified_payload

    for delivery_id, body in bodies.items():
        row = _row(omoi.database_url, delivery_id)
        text_ = None if row.raw_body is not None else _signed_bytes(omoi.database_url, delivery_id).decode()
        assert verified_payload(row, text_, WEBHOOK_SECRET) == (json.loads(body), ""), delivery_id


def test_the_worker_checks_each_row_before_routing_it(omoi_env, database_url, monkeypatch):
    """In-process, every way a row can fail the check; GitHub points at a closed port here, so a
    row that were routed would end with another error (or be retried)."""
    from app.intake import processing
    from app.config import reset_settings_cache

    monkeypatch.setenv("OMOI_GITHUB_MAX_RETRIES", "0")
    reset_settings_cache()

    genuine_payload = _labeled(INSTALLATION, REPO, 1, "alice")
    body = _body(genuine_payload)
    good = dict(payload=genuine_payload, raw_body=body, signature=sign(body, WEBHOOK_SECRET),
                **_columns(genuine_payload))
    cases = {
        # the payload column as SQLAlchemy writes it (other spacing) is not the signed text
        "no-body": {**good, "raw_body": None},
        "no-signature": {**good, "signature": None},
        "other-secret": {**good, "signature": sign(body, WEBHOOK_SECRET + "x")},
        "short-signature": {**good, "signature": sign(body, WEBHOOK_SECRET)[:-1]},
        "sha1-signature": {**good, "signature": "sha1=" + sign(body, WEBHOOK_SECRET)[7:47]},
        "body-changed": {**good, "raw_body": body.replace(b'"alice"', b'"mallor"')},
        "payload-changed": {**good, "payload": {**genuine_payload, "action": "unlabeled"}},
        "action-column-changed": {**good, "action": "unlabeled"},
        "issue-key-changed": {**good, "issue_key": "victim/secrets#1"},
        "signed-non-object": {**good, "raw_body": b"[1]", "signature": sign(b"[1]", WEBHOOK_SECRET), "payload": [1]},
        "unhandled-event": {**good, "event": "star"},
    }
    pks = {name: _insert(database_url, delivery_id=name, **row) for name, row in cases.items()}
    # stored by the web process's writer, then the payload column's text changed (same meaning)
    pks["text-changed"] = _store_like_the_web_process(database_url, "text-changed", body, sign(body, WEBHOOK_SECRET))
    with session_scope(database_url) as s:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == pks["text-changed"])
                  .values(payload=genuine_payload))  # re-serialised by SQLAlchemy: other bytes
    if database_url.startswith("sqlite"):  # PostgreSQL refuses text that is not JSON in a json column
        with session_scope(database_url) as s:
            s.connection().exec_driver_sql(
                "INSERT INTO webhook_deliveries (delivery_id, event, payload, status, attempts, received_at)"
                " VALUES ('not-json', 'issues', '{not json', 'queued', 0, '2020-01-01 00:00:00')")
            pks["not-json"] = s.scalars(select(WebhookDelivery.id).where(
                WebhookDelivery.delivery_id == "not-json")).one()
    for name, pk in pks.items():
        assert processing.process_delivery(pk).outcome == "failed", name
        with session_scope(database_url) as s:
            status, error, attempts = s.execute(select(WebhookDelivery.status, WebhookDelivery.error,
                                                       WebhookDelivery.attempts).where(WebhookDelivery.id == pk)).one()
        assert (status, error, attempts) == ("failed", INTEGRITY_FAILED, 1), name
        # a second message for the same row changes nothing
        assert processing.process_delivery(pk).outcome == "already-failed"

    # rows that pass the check are routed (and then fail to reach GitHub: closed port): the body
    # stored as bytes, the payload column's own text (UTF-8), and a UTF-16 body
    utf16 = json.dumps(genuine_payload).encode("utf-16")
    passing = [
        lambda: _insert(database_url, delivery_id="good-bytes", **good),
        lambda: _store_like_the_web_process(database_url, "good-text", body, sign(body, WEBHOOK_SECRET)),
        lambda: _store_like_the_web_process(database_url, "good-utf16", utf16, sign(utf16, WEBHOOK_SECRET)),
    ]
    for store in passing:
        with session_scope(database_url) as s:  # nothing older on the issue to wait for
            s.execute(update(WebhookDelivery).where(WebhookDelivery.status == "queued").values(status="done"))
        pk = store()
        result = processing.process_delivery(pk)
        with session_scope(database_url) as s:
            row = s.get(WebhookDelivery, pk)
            assert row.started_at is not None and row.error != INTEGRITY_FAILED, (row.delivery_id, result, row.error)
