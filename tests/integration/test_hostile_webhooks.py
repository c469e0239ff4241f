"""Hostile webhooks against the real endpoint, in-process (aiohttp test client, both databases),
under hypothesis: random and forged requests never get a 5xx and a delivery not signed with the
secret is never stored; every signed JSON object is accepted (handled events, stored exactly as
sent) or ignored; odd but valid JSON is no 5xx; whatever is stored, the worker finishes.
"""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from app.config import get_settings
from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.events import HANDLED_EVENTS
from app.web.delivery import delivery_columns
from app.web.server import create_app
from tests.fakes.webhooks import sign
from tests.support.env import WEBHOOK_SECRET

# No example database: runs are reproducible from the seed hypothesis prints, and leave no files.
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# --------------------------------------------------------------------------------------------
# the webhook endpoint, in-process


class _Endpoint:
    """The real aiohttp app on a test server, driven from a sync hypothesis test through one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = TestClient(TestServer(create_app(get_settings())), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict | None]:
        async def go():
            resp = await self.client.post("/webhooks/github", data=body, headers=headers)
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            return resp.status, data

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture
def endpoint(omoi_env):
    ep = _Endpoint()
    yield ep
    ep.close()


def _stored() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(WebhookDelivery))


# Header values an HTTP client can send (no CR/LF/NUL); a few non-ASCII letters too.
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("éß€✓"),
                      max_size=80)
events = st.sampled_from(sorted(HANDLED_EVENTS) + ["ping", "star", "push", ""]) | header_text
delivery_ids = st.uuids().map(str) | header_text
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
# Objects that look a little like GitHub's, with the fields omoi reads given hostile types.
json_objects = st.fixed_dictionaries(
    {},
    optional={
        "action": json_values,
        "installation": json_values | st.fixed_dictionaries({"id": json_values}),
        "repository": json_values,
        "issue": json_values,
        "sender": json_values,
    },
).flatmap(lambda base: st.dictionaries(st.text(max_size=12), json_values, max_size=5).map(lambda extra: {**extra, **base}))


@st.composite
def requests(draw):
    """A random request: random body, event, delivery id and a signature that is right only sometimes."""
    kind = draw(st.sampled_from(["bytes", "json", "json_array", "text"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=2000))
    elif kind == "json":
        body = json.dumps(draw(json_objects)).encode()
    elif kind == "json_array":
        body = json.dumps(draw(st.lists(json_values, max_size=3))).encode()
    else:
        body = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    sig_kind = draw(st.sampled_from(["valid", "wrong_secret", "missing", "random", "sha1", "truncated",
                                     "tampered", "uppercase", "empty_secret"]))
    headers = {"Content-Type": draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))}
    if draw(st.booleans()):
        headers["X-GitHub-Event"] = draw(events)
    if draw(st.integers(0, 9)):  # usually present
        headers["X-GitHub-Delivery"] = draw(delivery_ids)
    valid = sign(body, WEBHOOK_SECRET)
    signature = {
        "valid": valid,
        "wrong_secret": sign(body, WEBHOOK_SECRET + "x"),
        "missing": None,
        "random": draw(header_text),
        "sha1": "sha1=" + valid[7:47],
        "truncated": valid[:-1],
        "tampered": sign(body + b" ", WEBHOOK_SECRET),
        "uppercase": "sha256=" + valid[7:].upper(),
        "empty_secret": sign(body, ""),
    }[sig_kind]
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return body, headers, sig_kind == "valid"


def test_random_requests_never_5xx_and_forged_are_never_stored(endpoint):
    @FUZZ
    @given(requests())
    def check(request):
        body, headers, signed = request
        before = _stored()
        status, data = endpoint.post(body, headers)
        assert status < 500, (status, data)
        if not signed:
            assert status == 401, (status, data)
            assert _stored() == before
        else:
            assert status in (200, 202, 400), (status, data)
            if status == 400:
                assert _stored() == before

    check()


def test_every_signed_json_object_is_accepted_or_ignored(endpoint):
    @FUZZ
    @given(event=st.sampled_from(sorted(HANDLED_EVENTS)) | st.sampled_from(["ping", "star", "workflow_run"]),
           payload=json_objects)
    def check(event, payload):
        body = json.dumps(payload).encode()
        delivery = str(uuid.uuid4())
        status, data = endpoint.post(body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                                            "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET),
                                            "Content-Type": "application/json"})
        if event == "ping":
            assert (status, data["status"]) == (200, "pong")
        elif event not in HANDLED_EVENTS:
            assert (status, data["status"]) == (202, "ignored")
        elif delivery_columns(payload)["installation_id"] is None:  # nobody to act as: answered, not stored
            assert (status, data) == (202, {"status": "ignored", "reason": "the delivery names no installation"})
            with session_scope() as s:
                assert s.scalars(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery)).first() is None
        else:
            assert (status, data["status"]) == (202, "queued"), data
            with session_scope() as s:
                row = s.scalars(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery)).one()
                assert row.payload == payload and row.event == event and row.status == "queued"

    check()


def test_redelivery_of_a_random_signed_object_is_stored_once(endpoint):
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(payload=json_objects)
    def check(payload):
        payload = {**payload, "installation": {"id": 7}}  # stored only when it names an installation
        body = json.dumps(payload).encode()
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
                   "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET)}
        before = _stored()
        assert endpoint.post(body, headers)[0] == 202
        assert endpoint.post(body, headers) == (200, {"status": "duplicate"})
        assert _stored() == before + 1

    check()


@pytest.mark.parametrize("raw", [
    b'{"action": "opened", "x": "nul \\u0000 char"}',
    b'{"action": "opened", "x": "lone \\ud800 surrogate"}',
    b'{"action": "opened", "x": "pair \\ud83d\\udca5 emoji"}',
    b'{"action": "\\u0000", "installation": {"id": 99999999999999999999999}}',
    b'{"action": "opened", "x": "' + "é".encode() * 5000 + b'"}',
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
])
def test_odd_but_valid_json_is_accepted_not_a_5xx(endpoint, raw):
    status, data = endpoint.post(raw, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
                                       "X-Hub-Signature-256": sign(raw, WEBHOOK_SECRET)})
    assert status < 500, data
    assert status in (202, 400), data


def test_nan_and_infinity_are_not_json(endpoint):
    for raw in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'):
        status, data = endpoint.post(raw, {"X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
                                           "X-Hub-Signature-256": sign(raw, WEBHOOK_SECRET)})
        assert (status, data["error"]) == (400, "body is not valid JSON")


def test_worker_ends_every_hostile_signed_payload_without_a_crash_loop(endpoint, monkeypatch):
    """What the web process stores, the worker must finish: a recorded outcome on the first attempt
    (never an exception that rolls the attempt back and leaves the row for the sweep forever)."""
    from app.intake import processing
    from app.config import reset_settings_cache

    monkeypatch.setenv("OMOI_GITHUB_MAX_RETRIES", "0")
    reset_settings_cache()
    hostile_github = st.fixed_dictionaries({}, optional={
        "action": st.sampled_from(["labeled", "created", "edited", "deleted", "opened"]) | json_values,
        # the web process stores only deliveries naming an installation (others: 202 ignored, above)
        "repository": json_values | st.fixed_dictionaries({"id": json_values, "full_name": json_values}),
        "issue": json_values | st.fixed_dictionaries({"number": json_values, "pull_request": json_values}),
        "comment": json_values | st.fixed_dictionaries({"id": json_values, "body": json_values}),
        "sender": json_values, "label": json_values, "repositories": json_values,
    })

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(event=st.sampled_from(sorted(HANDLED_EVENTS)), payload=hostile_github,
           installation=st.fixed_dictionaries({"id": st.integers(1, 2**63 - 1)}, optional={"account": json_values}))
    def check(event, payload, installation):
        payload = {**payload, "installation": installation}
        body = json.dumps(payload).encode()
        delivery = str(uuid.uuid4())
        status, _ = endpoint.post(body, {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                                         "X-Hub-Signature-256": sign(body, WEBHOOK_SECRET)})
        assert status == 202
        with session_scope() as s:
            pk = s.scalars(select(WebhookDelivery.id).where(WebhookDelivery.delivery_id == delivery)).one()
        result = processing.process_delivery(pk)
        with session_scope() as s:
            row = s.get(WebhookDelivery, pk)
            assert row.attempts == 1, (result, row.status, row.error)
            assert (result.outcome, row.status) in {("done", "done"), ("failed", "failed"), ("retry", "queued")}, (
                result, row.status, row.error)

    check()
