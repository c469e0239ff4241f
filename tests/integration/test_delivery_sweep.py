"""The recovery sweep (app/intake/processing.py `sweep_deliveries`, Celery beat's every minute):
what it queues again and what it ends. A delivery started MAX_ATTEMPTS times that never finished
(its worker died each time: nothing after the count ran) ends `failed` and is not queued; one with
tries left is queued; one whose try started just now is left to it. Both databases."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.intake.processing import GAVE_UP, MAX_ATTEMPTS, process_delivery, sweep_deliveries
from app.timeutil import utc_now


def _row(delivery_id: str, **values) -> int:
    old = utc_now() - timedelta(hours=1)
    with session_scope() as s:
        return s.execute(insert(WebhookDelivery).values(
            delivery_id=delivery_id, event="issues", payload={}, signature="sha256=0", received_at=old,
            **values).returning(WebhookDelivery.id)).scalar_one()


def _state(pk: int) -> tuple:
    with session_scope() as s:
        return s.execute(select(WebhookDelivery.status, WebhookDelivery.attempts, WebhookDelivery.error)
                         .where(WebhookDelivery.id == pk)).one()


def test_the_sweep_ends_deliveries_out_of_tries_and_queues_the_others(omoi_env):
    hour_ago = utc_now() - timedelta(hours=1)
    poison = _row("poison", status="processing", attempts=MAX_ATTEMPTS, started_at=hour_ago)
    crashed_once = _row("crashed-once", status="processing", attempts=1, started_at=hour_ago)
    never_sent = _row("never-sent", status="received", attempts=0)
    running = _row("running", status="processing", attempts=1, started_at=utc_now())
    done = _row("done", status="done", attempts=1)

    queued: list[int] = []
    assert sweep_deliveries(queued.append) == 2
    assert sorted(queued) == sorted([crashed_once, never_sent])
    assert _state(poison) == ("failed", MAX_ATTEMPTS, GAVE_UP)
    assert _state(running)[0] == "processing" and _state(done)[0] == "done"

    # and never again: the next sweep leaves it, a message still in the broker changes nothing
    queued.clear()
    sweep_deliveries(queued.append)
    assert poison not in queued
    assert process_delivery(poison).outcome == "already-failed"
    assert _state(poison) == ("failed", MAX_ATTEMPTS, GAVE_UP)


def test_a_try_beyond_the_last_ends_the_delivery_without_reading_it(omoi_env):
    """A broker message redelivered after the worker died on the last try (late acknowledgement)."""
    pk = _row("out-of-tries", status="processing", attempts=MAX_ATTEMPTS)
    assert process_delivery(pk).outcome == "failed"
    assert _state(pk) == ("failed", MAX_ATTEMPTS, GAVE_UP)
