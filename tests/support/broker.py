"""Reading omoi's Celery queue back in a test, as a worker's consumer reads it (kombu), on Redis or the
embedded broker: what omoi enqueued, observed on the broker itself."""
from __future__ import annotations


def read_queue(app) -> list:
    """Every message on the app's default queue, oldest first, consumed: (headers, properties, decoded body)."""
    out = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue, no_ack=True)
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                return out
            out.append((message.headers, message.properties, message.decode()))
