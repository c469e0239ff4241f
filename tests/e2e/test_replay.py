"""`python -m app replay`: sign a saved payload like GitHub does and send it to a running web process."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select

from app.db.models import WebhookDelivery
from app.db.session import session_scope
from tests.fakes.webhooks import example, issues_labeled_payload
from tests.support.services import free_port


@pytest.fixture
def web(database_url, omoi_world):
    """omoi's web process alone (no GitHub, an in-memory broker) on both databases."""
    return omoi_world(database=database_url, broker="memory://", worker=False)


def replay(web, *args: str, **env_overrides: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in web.env.items()}
    for k, v in env_overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run([sys.executable, "-m", "app", "replay", *args], cwd=web.workdir, env=env,
                          capture_output=True, text=True, timeout=60)


def rows(database_url):
    with session_scope(database_url) as s:
        return [(r.delivery_id, r.event, r.action, r.status) for r in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]


def test_replay_signs_and_delivers_a_saved_payload(web, tmp_path, database_url):
    payload = tmp_path / "issues-labeled.json"
    payload.write_text(json.dumps(issues_labeled_payload(
        installation_id=1, repo_full_name="octo/hello", issue_number=4, label="omoi", sender_login="alice")))

    done = replay(web, str(payload), "--event", "issues", "--delivery", "replay-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 ")
    assert json.loads(done.stdout.split(" ", 1)[1]) == {"status": "queued"}
    assert rows(database_url) == [("replay-1", "issues", "labeled", "queued")]

    # The same delivery id again is recognised as a redelivery.
    again = replay(web, str(payload), "--event", "issues", "--delivery", "replay-1")
    assert again.returncode == 0 and again.stdout.startswith("200 ") and "duplicate" in again.stdout
    # Without --delivery each replay is a new delivery.
    fresh = replay(web, str(payload), "--event", "issues", "--url", f"{web.url}/webhooks/github")
    assert fresh.returncode == 0 and fresh.stdout.startswith("202 ")
    assert len(rows(database_url)) == 2


def test_replay_of_a_real_github_example_and_a_ping(web, tmp_path):
    payload = tmp_path / "comment.json"
    payload.write_text(json.dumps(example("issue_comment", "created")))
    done = replay(web, str(payload), "--event", "issue_comment")
    assert done.returncode == 0 and done.stdout.startswith("202 "), done.stdout + done.stderr
    ping = tmp_path / "ping.json"
    ping.write_text(json.dumps({"zen": "Practicality beats purity.", "hook_id": 1}))
    pong = replay(web, str(ping), "--event", "ping")
    assert pong.returncode == 0 and "pong" in pong.stdout


def test_replay_with_the_wrong_secret_is_refused_and_stores_nothing(web, tmp_path, database_url):
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps(issues_labeled_payload(
        installation_id=1, repo_full_name="octo/hello", issue_number=4, label="omoi", sender_login="alice")))
    done = replay(web, str(payload), "--event", "issues", OMOI_WEBHOOK_SECRET="not-the-secret")
    assert done.returncode == 1 and done.stdout.startswith("401 ")
    assert rows(database_url) == []


def test_replay_fails_cleanly_without_secret_broken_file_or_server(web, tmp_path):
    payload = tmp_path / "p.json"
    payload.write_text('{"action": "opened"')  # truncated
    broken = replay(web, str(payload), "--event", "issues")
    assert broken.returncode == 2 and "cannot replay" in broken.stderr and "Traceback" not in broken.stderr
    payload.write_text("{}")
    no_secret = replay(web, str(payload), "--event", "issues", OMOI_WEBHOOK_SECRET=None)
    assert no_secret.returncode == 2 and "OMOI_WEBHOOK_SECRET" in no_secret.stderr
    down = replay(web, str(payload), "--event", "issues", "--url", f"http://127.0.0.1:{free_port()}/webhooks/github")
    assert down.returncode == 1 and "cannot reach" in down.stderr and "Traceback" not in down.stderr
