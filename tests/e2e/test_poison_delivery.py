"""A delivery whose processing kills the worker every time ends `failed` and is never queued again.

Through omoi's real web and worker processes, on both stacks (SQLite + the embedded broker,
PostgreSQL + Redis): GitHub here accepts connections and never answers, so every try of the
delivery sits in the middle of processing it (waiting for an installation token); the test then
kills the worker's pool process with SIGKILL, as the kernel's OOM killer or a crash in native
code would. The broker hands the message out again (late acknowledgement), the worker tries again,
and so on: after MAX_ATTEMPTS tries the next one ends the row `failed` without processing it, and
the recovery sweep does not queue it again.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from sqlalchemy import select

from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.intake.processing import GAVE_UP, MAX_ATTEMPTS
from tests.fakes.webhooks import issues_labeled_payload, post_delivery
from tests.support.env import WEBHOOK_SECRET
from tests.support.processes import send_sweep
from tests.support.waits import wait_for


class SilentGitHub:
    """A GitHub that accepts every connection and never answers; counts the connections."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(conn)

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._sock.close()
        with self._lock:
            for conn in self._held:
                conn.close()


@pytest.fixture
def silent_github():
    github = SilentGitHub()
    yield github
    github.close()


def _row(url: str, delivery_id: str):
    with session_scope(url) as s:
        return s.execute(select(WebhookDelivery.status, WebhookDelivery.attempts, WebhookDelivery.error)
                         .where(WebhookDelivery.delivery_id == delivery_id)).one_or_none()


def _pool_processes(pid: int) -> list[int]:
    """The worker's children: its prefork pool (no beat here); every thread's: the pool forks
    replacements from a thread of its own."""
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                children += [int(p) for p in fh.read().split()]
        except FileNotFoundError:  # that thread ended meanwhile
            pass
    return children


def test_a_delivery_that_kills_the_worker_ends_failed_after_max_attempts(
        silent_github, database_url, broker_url, omoi_world):
    omoi = omoi_world(database=database_url, broker=broker_url, extra_env={
        "OMOI_GITHUB_API_URL": silent_github.url,
        "OMOI_GITHUB_MAX_RETRIES": "0",
        # a killed holder's issue lock is taken over once it expires: the next try need not wait 10 min
        "OMOI_ISSUE_LOCK_SECONDS": "1",
        # One pool process, so the one killed is the one processing the delivery. (Killing an idle
        # one can wedge Celery's prefork pool: it dies holding the lock of the pool's job queue.)
        "OMOI_WORKER_CONCURRENCY": "1",
    })
    worker = omoi.procs["worker"]
    payload = issues_labeled_payload(installation_id=31, repo_full_name="octo/poison", issue_number=1,
                                     label="omoi", sender_login="alice")
    status, _ = post_delivery(omoi.url + "/webhooks/github", "issues", payload, WEBHOOK_SECRET,
                              delivery_id="poison")
    assert status == 202

    for attempt in range(1, MAX_ATTEMPTS + 1):
        # the try is under way: counted in the database, and waiting on GitHub
        wait_for(lambda: _row(omoi.database_url, "poison")[:2] == ("processing", attempt)
                 and silent_github.connections >= attempt, timeout=60,
                 message=lambda: f"try {attempt} under way: {_row(omoi.database_url, 'poison')}, "
                                 f"{silent_github.connections} connections\n" + omoi.log_text("worker")[-3000:])
        for pid in _pool_processes(worker.pid):
            os.kill(pid, signal.SIGKILL)

    wait_for(lambda: _row(omoi.database_url, "poison")[0] == "failed", timeout=60,
             message=lambda: f"the row failed: {_row(omoi.database_url, 'poison')}\n" + omoi.log_text("worker")[-3000:])
    assert _row(omoi.database_url, "poison") == ("failed", MAX_ATTEMPTS, GAVE_UP)
    assert silent_github.connections == MAX_ATTEMPTS  # the last pick-up did not try again
    assert worker.poll() is None  # the worker itself lives on
    assert "delivery_gave_up" in omoi.log_text("worker")

    # the recovery sweep (Celery beat's, every minute) finds nothing to queue again
    time.sleep(6)  # were it unfinished, the row would now be stale (OMOI_DELIVERY_STALE_SECONDS is 5)
    send_sweep(omoi.env)
    wait_for(lambda: "omoi.sweep_deliveries" in omoi.log_text("worker").split("delivery_gave_up")[-1]
             and "succeeded" in omoi.log_text("worker").split("omoi.sweep_deliveries")[-1], timeout=60,
             message=lambda: "the sweep ran\n" + omoi.log_text("worker")[-3000:])
    sweep_line = [line for line in omoi.log_text("worker").splitlines()
                  if "omoi.sweep_deliveries" in line and "succeeded" in line][-1]
    assert sweep_line.rstrip().endswith(": 0"), sweep_line
    assert _row(omoi.database_url, "poison") == ("failed", MAX_ATTEMPTS, GAVE_UP)
    assert silent_github.connections == MAX_ATTEMPTS
