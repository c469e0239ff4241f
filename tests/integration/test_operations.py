"""Operations: database-derived Prometheus metrics and optional Sentry."""
from __future__ import annotations

import sys
import types
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app.config import Settings, get_settings
from app.db.models import LLMCall, Spec, WebhookDelivery
from app.db.session import session_scope
from app.observability.sentry import init_sentry
from app.timeutil import utc_now
from app.web.server import create_app


def _samples(text: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_include_database_gauges(omoi_env, aiohttp_client):
    now = utc_now()
    with session_scope() as s:
        s.add_all([
            Spec(repo_full_name="o/r", issue_number=1, state="planning"),   # stuck (changed 2 h ago)
            Spec(repo_full_name="o/r", issue_number=2, state="planning"),   # fresh
            Spec(repo_full_name="o/r", issue_number=3, state="running"),    # stuck
            Spec(repo_full_name="o/r", issue_number=4, state="design"),     # waiting on people: not stuck
            Spec(repo_full_name="o/r", issue_number=5, state="done", created_at=now - timedelta(minutes=10)),
            Spec(repo_full_name="o/r", issue_number=6, state="rejected", created_at=now - timedelta(days=2)),
            Spec(repo_full_name="o/r", issue_number=7, state="approved", run_state="running",
                 run_started_at=now - timedelta(hours=3)),                 # a task run going on 3 h
            Spec(repo_full_name="o/r", issue_number=8, state="approved", run_state="running",
                 run_started_at=now - timedelta(minutes=5)),
            Spec(repo_full_name="o/r", issue_number=9, state="approved", run_state="succeeded",
                 run_started_at=now - timedelta(minutes=20), run_finished_at=now),
            WebhookDelivery(delivery_id="a", event="issues", payload={}, status="queued"),
            WebhookDelivery(delivery_id="b", event="issues", payload={}, status="queued"),
            WebhookDelivery(delivery_id="c", event="issues", payload={}, status="received"),
            WebhookDelivery(delivery_id="d", event="issues", payload={}, status="done"),
            LLMCall(model="m1", input_tokens=100, output_tokens=10, cache_read_input_tokens=5, cost_usd=Decimal("0.25")),
            LLMCall(model="m1", input_tokens=50, output_tokens=5, cost_usd=Decimal("0.5")),
        ])
    with session_scope() as s:
        s.execute(update(Spec).where(Spec.issue_number.in_([1, 3, 4])).values(updated_at=now - timedelta(hours=2)))
        s.execute(update(Spec).where(Spec.issue_number.in_([5, 6])).values(updated_at=now))

    client = await aiohttp_client(create_app(get_settings()))
    resp = await client.get("/metrics")
    assert resp.status == 200
    m = _samples(await resp.text())
    assert m[("omoi_database_metrics_up", ())] == 1
    assert m[("omoi_runs_without_end_state", (("phase", "planning"), ("state", "planning")))] == 1
    assert m[("omoi_runs_without_end_state", (("phase", "planning"), ("state", "running")))] == 1
    assert m[("omoi_runs_without_end_state", (("phase", "planning"), ("state", "acknowledged")))] == 0
    assert m[("omoi_runs_without_end_state", (("phase", "run"), ("state", "running")))] == 1
    assert m[("omoi_delivery_queue_depth", (("status", "queued"),))] == 2
    assert m[("omoi_delivery_queue_depth", (("status", "received"),))] == 1
    P, R = ("phase", "planning"), ("phase", "run")
    assert m[("omoi_spec_time_to_end_state_seconds_count", (P, ("state", "done")))] == 1
    assert m[("omoi_spec_time_to_end_state_seconds_bucket", (("le", "900.0"), P, ("state", "done")))] == 1
    assert m[("omoi_spec_time_to_end_state_seconds_bucket", (("le", "86400.0"), P, ("state", "rejected")))] == 0
    assert m[("omoi_spec_time_to_end_state_seconds_count", (P, ("state", "rejected")))] == 1
    assert m[("omoi_spec_time_to_end_state_seconds_bucket", (("le", "900.0"), R, ("state", "succeeded")))] == 0
    assert m[("omoi_spec_time_to_end_state_seconds_bucket", (("le", "1800.0"), R, ("state", "succeeded")))] == 1
    assert m[("omoi_spec_time_to_end_state_seconds_sum", (R, ("state", "succeeded")))] == pytest.approx(1200, abs=1)
    assert m[("omoi_llm_tokens_recorded_total", (("kind", "input"), ("model", "m1")))] == 150
    assert m[("omoi_llm_tokens_recorded_total", (("kind", "cache_read"), ("model", "m1")))] == 5
    assert m[("omoi_llm_cost_usd_recorded_total", (("model", "m1"),))] == pytest.approx(0.75)
    # the process's own metrics are still there
    assert any(name == "omoi_webhook_ack_seconds_count" for name, _ in m)


async def test_metrics_survive_a_database_outage(omoi_env, aiohttp_client):
    client = await aiohttp_client(create_app(Settings(database_url="postgresql://omoi@127.0.0.1:1/nowhere")))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert _samples(await resp.text())[("omoi_database_metrics_up", ())] == 0


def test_sentry_is_optional(monkeypatch):
    calls = {}
    fake = types.ModuleType("sentry_sdk")
    fake.init = lambda **kw: calls.setdefault("init", kw)
    fake.set_tag = lambda k, v: calls.setdefault("tag", (k, v))

    assert init_sentry(Settings(sentry_dsn=None), "web") is False
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # not installed: ImportError
    assert init_sentry(Settings(sentry_dsn="https://k@sentry.example/1"), "web") is False

    monkeypatch.setitem(sys.modules, "sentry_sdk", fake)
    assert init_sentry(Settings(sentry_dsn="https://k@sentry.example/1", sentry_environment="prod"), "worker") is True
    assert calls["init"]["dsn"] == "https://k@sentry.example/1"
    assert calls["init"]["environment"] == "prod" and calls["init"]["send_default_pii"] is False
    assert calls["tag"] == ("omoi.process", "worker")
    event = {"exception": {"values": [{"value": "bad token ghs_ABCDEFGHIJKLMNOPQRSTUV"}]}}
    assert "ghs_" not in str(calls["init"]["before_send"](event, None))
