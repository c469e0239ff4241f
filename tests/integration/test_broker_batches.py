"""The web process's batches of `omoi.process_delivery` messages (app/jobs.py, app/broker/copies.py):
after the first message Celery builds on a channel, later ones are copies of its envelope (on
Redis pushed in one LPUSH, on the embedded broker one file each). A consumer must find in each exactly the message
Celery would have sent: the same task, headers and properties, its own ids, its own argument, in
order. Read back with kombu, as the worker reads them."""
from __future__ import annotations

import uuid

import pytest

from app import jobs
from app.broker import make_celery
from app.config import Settings
from tests.support.broker import read_queue
from tests.support.services import REDIS_URL, redis_available, require_service


@pytest.fixture(params=["redis", "filesystem"])
def celery(request, tmp_path):
    """Redis, and the embedded broker (kombu's filesystem transport, app/broker/fs_transport.py)."""
    if request.param == "redis":
        require_service(redis_available(), "Redis on 127.0.0.1:6379")
    app = make_celery(Settings(broker_url=REDIS_URL if request.param == "redis" else "",
                               data_dir=str(tmp_path / "data"), queue_name=f"omoi-test-{uuid.uuid4().hex[:8]}",
                               database_url="sqlite://", webhook_secret="x"))
    yield app
    if request.param == "redis":
        with app.connection_for_write() as conn:
            conn.default_channel.client.delete(app.conf.task_default_queue)
    app.close()


def test_later_batches_are_copies_of_the_message_celery_built(celery):
    jobs.process_deliveries(celery, [101])  # Celery builds this one
    jobs.process_deliveries(celery, [102, 103, 104])  # copies, one LPUSH
    jobs.process_deliveries(celery, [105])
    messages = read_queue(celery)
    pks = [body[0][0] for _, _, body in messages]
    if celery.conf.broker_url.startswith("redis"):
        assert pks == [101, 102, 103, 104, 105]  # in order
    else:  # the embedded broker orders by the millisecond a message was written, then at random
        assert sorted(pks) == [101, 102, 103, 104, 105]
        messages.sort(key=lambda m: m[2][0][0])

    first_headers, first_props, first_body = messages[0]
    assert first_headers["task"] == "omoi.process_delivery"
    ids = set()
    for headers, props, body in messages:
        pk = body[0][0]
        task_id = headers["id"]
        ids.add(task_id)
        assert headers == dict(first_headers, id=task_id, root_id=task_id, argsrepr=f"[{pk}]")
        assert (props["correlation_id"], props["delivery_info"]) == (task_id, first_props["delivery_info"])
        assert {k: v for k, v in props.items() if k not in ("correlation_id", "delivery_tag")} == \
            {k: v for k, v in first_props.items() if k not in ("correlation_id", "delivery_tag")}
        assert body[1:] == first_body[1:]  # kwargs and Celery's embed (callbacks, chain...)
    assert len(ids) == len(messages)
    assert len({props["delivery_tag"] for _, props, _ in messages}) == len(messages)


def test_only_a_plain_message_is_a_template(celery):
    """Nothing is copied before Celery has sent a message of the task on the channel, nor from a
    message with an ETA (it would copy the ETA): Celery builds those."""
    from app.broker.copies import TaskCopies

    queue = celery.conf.task_default_queue
    with celery.producer_or_acquire() as producer:
        channel = producer.channel
        assert isinstance(channel, TaskCopies)
        assert channel.push_task_copies("omoi.process_delivery", queue, [[1]]) is False
        celery.send_task("omoi.process_delivery", args=[2], countdown=30, producer=producer)
        assert channel.push_task_copies("omoi.process_delivery", queue, [[3]]) is False
    assert [(headers["eta"] is not None, body[0]) for headers, _, body in read_queue(celery)] == [(True, [2])]
