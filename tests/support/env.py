"""The settings every omoi under test gets: the GitHub App's id, its webhook secret and commit
author, the key the Anthropic stand-in accepts, and base_env, the environment of omoi's processes
(and of settings made inside the test process)."""
from __future__ import annotations

import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_ID = 4242
WEBHOOK_SECRET = "test-webhook-secret-4f9a"
MODEL_KEY = "sk-fake-test-key"
BOT_AUTHOR = ("omoi[bot]", f"{APP_ID}+omoi[bot]@users.noreply.github.com")


def base_env(fake_github, rsa_keypair, database_url: str, broker_url: str, data_dir: Path, port: int) -> dict:
    """omoi's settings against the GitHub stand-in (a closed port without one), on `database_url` and
    `broker_url` ("" is the embedded broker), serving on 127.0.0.1:`port`."""
    return {
        "OMOI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OMOI_GITHUB_APP_ID": str(APP_ID),
        "OMOI_GITHUB_PRIVATE_KEY": rsa_keypair[0],
        "OMOI_GITHUB_API_URL": fake_github.url if fake_github else "http://127.0.0.1:9",
        "OMOI_DATABASE_URL": database_url,
        "OMOI_BROKER_URL": broker_url,
        "OMOI_DATA_DIR": str(data_dir),
        "OMOI_HOST": "127.0.0.1",
        "OMOI_PORT": str(port),
        "OMOI_LOG_LEVEL": "INFO",
        "OMOI_DELIVERY_STALE_SECONDS": "5",
        "OMOI_SPEC_EXPLORE": "false",  # on by default; the tests of exploring (test_explore_first.py) turn it on
        # on by default; a validate session per task would need a scripted conversation in every test
        # (test_validation.py turns it on through .github/omoi.yml)
        "OMOI_TASK_VALIDATE": "false",
        # Unique per test: test runs sharing one Redis never consume each other's tasks.
        "OMOI_QUEUE_NAME": f"omoi-test-{uuid.uuid4().hex[:8]}",
    }


def model_env(fake_anthropic) -> dict:
    """ANTHROPIC_* pointing at the Anthropic stand-in, with the key it accepts."""
    return {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": fake_anthropic.api_key or MODEL_KEY}
