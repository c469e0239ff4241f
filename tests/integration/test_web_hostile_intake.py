"""Hostile deliveries at the webhook endpoint (issue 15): bytes GitHub never sends in its headers,
bodies that never end or end early, absurd sizes and nesting, deliveries with nobody to act as.

Each one gets a clear 4xx (or 202 ignored) from a real aiohttp server over a real socket, stores
nothing, leaves /metrics answering with a bounded set of labels, and logs no traceback.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket

import pytest
from sqlalchemy import select, text

from app.config import get_settings, reset_settings_cache
from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.intake.processing import process_delivery
from app.web.server import create_app
from tests.fakes.webhooks import headers_for, issues_labeled_payload, sign


@pytest.fixture
async def client(omoi_env, aiohttp_client, monkeypatch):
    monkeypatch.setenv("OMOI_WEBHOOK_BODY_TIMEOUT_SECONDS", "0.5")
    reset_settings_cache()
    return await aiohttp_client(create_app(get_settings()))


def _secret(env) -> str:
    return env["OMOI_WEBHOOK_SECRET"]


def _stored() -> list[WebhookDelivery]:
    with session_scope() as s:
        return s.scalars(select(WebhookDelivery)).all()


def _labeled() -> bytes:
    return json.dumps(issues_labeled_payload(installation_id=1, repo_full_name="octo/hello", issue_number=1,
                                             label="omoi", sender_login="alice")).encode()


async def _raw(client, data: bytes, *, then_close: bool = False, wait: float = 5.0) -> bytes:
    """Send bytes on a socket of its own to the running server; return what it answers."""
    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", client.server.port), timeout=wait) as s:
            s.sendall(data)
            if then_close:
                return b""
            answer = b""
            try:
                while chunk := s.recv(65536):
                    answer += chunk
                    head, sep, body = answer.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), None)
                    if sep and length is not None and len(body) >= length:
                        break  # a whole answer: no need to wait for the server to hang up
            except TimeoutError:
                pass
            return answer
    return await asyncio.get_running_loop().run_in_executor(None, talk)


def _request(headers: dict[bytes, bytes], body: bytes, content_length: int | None = None) -> bytes:
    head = b"POST /webhooks/github HTTP/1.1\r\nHost: omoi\r\nConnection: close\r\n"
    for k, v in headers.items():
        head += k + b": " + v + b"\r\n"
    head += b"Content-Length: " + str(len(body) if content_length is None else content_length).encode() + b"\r\n"
    return head + b"\r\n" + body


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def _metrics_ok(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


@pytest.mark.parametrize("header", [b"X-GitHub-Delivery", b"X-GitHub-Event"])
async def test_a_non_utf8_byte_in_a_header_is_refused_and_metrics_keep_working(client, omoi_env, header):
    body = _labeled()
    headers = {b"X-GitHub-Event": b"issues", b"X-GitHub-Delivery": b"d-ok",
               b"X-Hub-Signature-256": sign(body, _secret(omoi_env)).encode()}
    headers[header] = headers[header][:2] + b"\xff\xfe" + headers[header][2:]
    answer = await _raw(client, _request(headers, body))
    assert _status(answer) == 400, answer[:200]
    assert _stored() == []
    metrics = await _metrics_ok(client)
    assert "\\udc" not in metrics and "\ufffd" not in metrics


async def test_unknown_event_names_make_no_new_metric_series(client, omoi_env):
    body = _labeled()
    for i in range(5):
        resp = await client.post("/webhooks/github", data=body,
                                 headers=headers_for(f"made_up_event_{i}", body, _secret(omoi_env)))
        assert resp.status == 202 and (await resp.json())["status"] == "ignored"
    metrics = await _metrics_ok(client)
    assert "made_up_event" not in metrics
    assert 'event="other"' in metrics


async def test_a_payload_nested_deeper_than_any_github_payload_is_refused(client, omoi_env):
    body = b'{"action": "labeled", "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    resp = await client.post("/webhooks/github", data=body, headers=headers_for("issues", body, _secret(omoi_env)))
    assert resp.status == 400
    assert "nested" in (await resp.json())["error"]
    assert _stored() == []


async def test_a_huge_content_length_is_refused_from_the_header(client, omoi_env):
    body = _labeled()
    headers = {b"X-GitHub-Event": b"issues", b"X-GitHub-Delivery": b"d-huge",
               b"X-Hub-Signature-256": sign(body, _secret(omoi_env)).encode()}
    # The body sent is small: a server that waited for the declared size would answer only at the time-out.
    answer = await _raw(client, _request(headers, body[:10], content_length=10**12), wait=3.0)
    assert _status(answer) == 413, answer[:200]
    assert _stored() == []


async def test_a_sender_that_stalls_mid_body_is_cut_off(client, omoi_env):
    body = _labeled()
    headers = {b"X-GitHub-Event": b"issues", b"X-GitHub-Delivery": b"d-slow",
               b"X-Hub-Signature-256": sign(body, _secret(omoi_env)).encode()}
    answer = await _raw(client, _request(headers, body[:20], content_length=len(body)), wait=4.0)
    assert _status(answer) == 408, answer[:200]
    assert _stored() == []


async def test_a_sender_that_hangs_up_mid_body_leaves_no_traceback(client, omoi_env, caplog):
    body = _labeled()
    headers = {b"X-GitHub-Event": b"issues", b"X-GitHub-Delivery": b"d-gone",
               b"X-Hub-Signature-256": sign(body, _secret(omoi_env)).encode()}
    with caplog.at_level(logging.DEBUG):
        await _raw(client, _request(headers, body[:20], content_length=len(body)), then_close=True)
        await asyncio.sleep(0.3)
        await _metrics_ok(client)  # the server is still there
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [(r.name, r.getMessage()) for r in caplog.records]
    assert _stored() == []


async def test_a_delivery_without_an_installation_is_ignored_not_queued(client, omoi_env):
    payload = json.loads(_labeled())
    del payload["installation"]
    body = json.dumps(payload).encode()
    resp = await client.post("/webhooks/github", data=body, headers=headers_for("issues", body, _secret(omoi_env)))
    assert resp.status == 202
    assert (await resp.json()) == {"status": "ignored", "reason": "the delivery names no installation"}
    assert _stored() == []


def test_a_row_too_deep_to_load_fails_once_instead_of_coming_back_forever(omoi_env):
    """Written into the database past the web process: the worker ends it `failed`, attempt counted, so
    the sweep never takes it again."""
    deep = '{"a": ' + "[" * 5_000 + "]" * 5_000 + "}"  # past Python's recursion limit, within PostgreSQL's
    with session_scope() as s:
        s.execute(text("INSERT INTO webhook_deliveries (delivery_id, event, payload, status, attempts, received_at) "
                       "VALUES ('d-deep', 'issues', :p, 'queued', 0, CURRENT_TIMESTAMP)"), {"p": deep})
        pk = s.scalar(text("SELECT id FROM webhook_deliveries WHERE delivery_id = 'd-deep'"))
    assert process_delivery(pk).outcome == "failed"
    with session_scope() as s:
        status, attempts = s.execute(text("SELECT status, attempts FROM webhook_deliveries WHERE id = :i"),
                                     {"i": pk}).one()
    assert (status, attempts) == ("failed", 1)
