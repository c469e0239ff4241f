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


def test_warm_up_loads_the_agent_sdk_and_compiles_the_task_templates():
    out = _fresh_python(
        "import sys\n"
        "from app.execution import warm\n"
        "from app.text.rendering import environment\n"
        "assert 'claude_agent_sdk' not in sys.modules\n"
        "n = warm.warm_up()\n"
        "cached = [name for (_, name) in environment().cache.keys()] if environment().cache is not None else []\n"
        "print(n, 'claude_agent_sdk' in sys.modules, 'execution/task_prompt.md.j2' in cached)\n")
    count, loaded, compiled = out.splitlines()[-1].split()  # the last line: before it, the log
    assert int(count) > 50 and loaded == "True" and compiled == "True"


def test_the_worker_warms_up_in_its_parent_before_the_pool_forks():
    # Celery sends worker_init in the parent, before the pool starts; the receiver is registered by
    # the task module the worker loads (tasks/execution.py).
    out = _fresh_python(
        "from celery.signals import worker_init\n"
        "import tasks.execution as t\n"
        "print(any(getattr(r[1], '__name__', '') == '_warm' or getattr(r[1](), '__name__', '') == '_warm'\n"
        "          for r in worker_init.receivers))\n")
    assert out.splitlines()[-1] == "True"
