"""A worker loads the agent SDK and the execution templates once, before its pool forks
(app/execution/warm.py), so no task pays for them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fresh_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip()


def test_warm_up_loads_the_agent_sdk_and_compiles_the_task_templates(tmp_path):
    key = tmp_path / "app.pem"
    key.write_text(_private_key())
    out = _fresh_python(
        "import os, sys\n"
        f"os.environ['OMOI_GITHUB_PRIVATE_KEY_PATH'] = {str(key)!r}\n"
        "from app.config import get_settings\n"
        "from app.execution import policy, warm\n"
        "from app.text.rendering import environment\n"
        "assert 'claude_agent_sdk' not in sys.modules\n"
        "n = warm.warm_up()\n"
        "cached = [name for (_, name) in environment().cache.keys()] if environment().cache is not None else []\n"
        "from app.execution.secret_scan import _prepared\n"
        "from app.text.redaction import redactor, redactor_for\n"
        "before, compiled_before = _prepared.cache_info().misses, redactor.cache_info().misses\n"
        "scanner = policy.scanner_for(policy.secrets_from_settings(get_settings(), extra=['ghs_' + 'Ab9' * 12]))\n"
        "outbound = redactor_for(get_settings(), extra=['ghs_' + 'Ab9' * 12])\n"  # what a task's first write uses
        "print(n, 'claude_agent_sdk' in sys.modules, 'execution/task_prompt.md.j2' in cached,\n"
        "      _prepared.cache_info().misses - before, len(scanner._grams) > 1000,\n"
        "      redactor.cache_info().misses - compiled_before, outbound.text(get_settings().private_key_pem()))\n")
    count, loaded, compiled, prepared, holds_key, redactors, redacted = out.splitlines()[-1].split()  # before it: the log
    assert int(count) > 50 and loaded == "True" and compiled == "True"
    # the private key's tables (about 40 ms of CPU) were built by the warm-up: a task's scanner prepares
    # only its installation token
    assert holds_key == "True" and prepared == "1"
    # the redactor for the configured secrets was compiled by the warm-up too, and it hides the key
    assert redactors == "0" and redacted == "[REDACTED]"


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def test_the_worker_warms_up_in_its_parent_before_the_pool_forks():
    # Celery sends worker_init in the parent, before the pool starts; the receiver is registered by
    # the task module the worker loads (tasks/execution.py).
    out = _fresh_python(
        "from celery.signals import worker_init\n"
        "import tasks.execution as t\n"
        "print(any(getattr(r[1], '__name__', '') == '_warm' or getattr(r[1](), '__name__', '') == '_warm'\n"
        "          for r in worker_init.receivers))\n")
    assert out.splitlines()[-1] == "True"
