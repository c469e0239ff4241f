"""Every Celery job omoi enqueues, one typed function each: the only module that sends a message.

The functions are named after the tasks in tasks/*.py (`omoi.<name>`) and send their arguments
positionally, in the order of the task's parameters, so messages already queued stay valid.
App code enqueues through here and never imports a task; the Celery application comes from
app/broker. `Result` and `is_transient` are what a job's work returns and how it decides to retry.
"""
from __future__ import annotations

import asyncio
from contextlib import nullcontext
from dataclasses import dataclass

import aiohttp
import gidgethub
from kombu.utils.uuid import uuid as _task_id

from app.broker import shared_celery

PROCESS_DELIVERY = "omoi.process_delivery"


@dataclass
class Result:
    """What a job's work came to; `retry_in` seconds when the job should run again."""

    outcome: str
    retry_in: float | None = None


def is_transient(exc: BaseException) -> bool:
    """A network or GitHub failure worth retrying the job for."""
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, gidgethub.GitHubBroken)):
        return True
    return isinstance(exc, gidgethub.HTTPException) and exc.status_code in (429, 500, 502, 503, 504)


def _send(name: str, *args, countdown: float | None = None) -> None:
    shared_celery().send_task(name, args=list(args), countdown=countdown)


# -- deliveries (tasks/webhooks.py)

def process_delivery(*, delivery_pk: int) -> None:
    """Verify, route and record one stored webhook delivery."""
    _send(PROCESS_DELIVERY, delivery_pk)


def sweep_deliveries() -> None:
    """Re-enqueue deliveries stored but never finished."""
    _send("omoi.sweep_deliveries")


# -- planning (tasks/spec.py)

def run_stage(*, spec_id: int, stage: str, feedback: str | None = None, request_key: str = "") -> None:
    """Write (or revise, with `feedback`) one stage of a spec; `request_key` makes it happen once."""
    _send("omoi.run_stage", spec_id, stage, feedback, request_key)


# -- execution (tasks/execution.py)

def start_run(*, spec_id: int, request_key: str = "") -> None:
    """Start (or resume) executing an approved spec's tasks."""
    _send("omoi.start_run", spec_id, request_key)


def schedule(*, spec_id: int, countdown: float | None = None) -> None:
    """Advance a spec's run: claim what is ready, render its progress (after `countdown` seconds)."""
    _send("omoi.schedule", spec_id, countdown=countdown)


def run_task(*, spec_id: int, task_id: str, lease_token: str) -> None:
    """Run one claimed task of a spec under the lease `lease_token`."""
    _send("omoi.run_task", spec_id, task_id, lease_token)


def execution_health() -> None:
    """Re-queue tasks of dead workers and nudge every running spec."""
    _send("omoi.execution_health")


# -- review rounds (tasks/review.py)

def address_review(*, installation_id: int, full_name: str, number: int, round_key: str,
                   notes: list[dict] | None = None) -> None:
    """Address the review feedback on one of omoi's pull requests, once per `round_key`; `notes` is
    feedback outside the threads (a review's body, a PR comment: app/execution/review_fix.note)."""
    _send("omoi.address_review", installation_id, full_name, number, round_key, notes)


# -- CI iteration (tasks/review.py)

def ci_result(*, spec_id: int, head_sha: str) -> None:
    """Checks of other apps finished on a spec's pull request head: fix them, or mark the PR ready."""
    _send("omoi.ci_result", spec_id, head_sha)


# -- the web process's batches

def process_deliveries(celery, pks: list[int]) -> None:
    """`process_delivery` for each pk, through `celery` (the web process's broker client) in one
    batch: one pooled producer, pipelined where the broker can (Redis: one round trip). Raises if
    the broker cannot take them."""
    with celery.producer_or_acquire() as producer:  # pooled: no new broker connection
        copies = getattr(producer.channel, "push_task_copies", None)  # app/broker/copies.py
        if copies is not None and copies(PROCESS_DELIVERY, celery.conf.task_default_queue, [[pk] for pk in pks]):
            return  # copies of the message Celery built for an earlier batch on this channel, one LPUSH
        batch = producer.batch() if hasattr(producer, "batch") else nullcontext()
        with batch:
            # Celery builds the first message (routing, headers, signals; it declares the
            # queue, once per connection, cached by kombu); the rest are that message with
            # their own task id and argument, published by kombu directly: Celery's
            # per-message work (options, routing, argsrepr, AsyncResult) was most of the
            # publish CPU, and it is the same for every message of the batch.
            first = _CapturingProducer(producer)
            celery.send_task(PROCESS_DELIVERY, args=[pks[0]], producer=first)
            if len(pks) > 1 and _clonable(first.sent):
                _publish_like(producer, first.sent, pks[1:])
            else:  # Celery did not publish through `producer.publish`: it builds every one
                for pk in pks[1:]:
                    celery.send_task(PROCESS_DELIVERY, args=[pk], producer=producer, declare=[])


class _CapturingProducer:
    """The pooled producer, recording what Celery publishes through it (one message)."""

    __slots__ = ("_producer", "sent")

    def __init__(self, producer) -> None:
        self._producer, self.sent = producer, None

    def __getattr__(self, name: str):
        return getattr(self._producer, name)

    def publish(self, body, **kwargs):
        self.sent = (body, kwargs)
        return self._producer.publish(body, **kwargs)


def _clonable(sent: tuple | None) -> bool:
    """A task message (protocol 2: an (args, kwargs, embed) body, the task id in the headers)."""
    if sent is None:
        return False
    body, kwargs = sent
    headers = kwargs.get("headers")
    return (isinstance(body, tuple) and len(body) == 3 and isinstance(headers, dict)
            and headers.get("task") == PROCESS_DELIVERY and isinstance(headers.get("id"), str))


def _publish_like(producer, sent: tuple, pks: list[int]) -> None:
    """One `omoi.process_delivery` message per pk, each the message Celery built for the batch's
    first pk (`sent`: the body and publish arguments) with its own task id and argument."""
    body, kwargs = sent
    _args, task_kwargs, embed = body
    headers = kwargs["headers"]
    first_id = headers["id"]
    same_root = headers.get("root_id") == first_id
    same_correlation = kwargs.get("correlation_id") == first_id
    kwargs = dict(kwargs, declare=[])  # declared with the first message
    publish = producer.publish
    for pk in pks:
        task_id = _task_id()
        h = dict(headers, id=task_id, argsrepr=repr([pk]))
        if same_root:
            h["root_id"] = task_id
        kw = dict(kwargs, headers=h)
        if same_correlation:
            kw["correlation_id"] = task_id
        publish(([pk], task_kwargs, embed), **kw)
