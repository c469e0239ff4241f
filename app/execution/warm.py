"""What a worker loads once at start, before its pool forks, instead of in its first task.

The first task of a fresh worker process used to import the Claude Agent SDK (about 0.6 s) and
compile the templates it renders while the agent waited, and every task starting with it paid the
same, fighting for the GIL; the first tasks to land each built the secret scan's tables for the App's
private key (about 40 ms of CPU, app/execution/secret_scan.py), and the run's first GitHub write
compiled the outbound redactor's expression for every configured secret in every encoding (about
0.3 s of CPU, app/text/redaction.py) while the first tasks started. Celery's `worker_init` (tasks/execution.py) calls `warm_up` in the
parent, so prefork children inherit it all; benchmarks/dag_run.py calls it as a worker would.
"""
from __future__ import annotations

from app.config import get_settings
from app.execution import policy
from app.observability.logs import get_logger
from app.text.redaction import redactor_for
from app.text.rendering import environment

log = get_logger("omoi.warm")
TEMPLATE_FOLDERS = ("execution", "checks", "reasons")  # what a task and its run report render


def warm_up() -> int:
    """Import the agent SDK, compile the execution templates, prepare the secret scan and the
    redactor for the configured secrets; returns how many templates."""
    import claude_agent_sdk  # noqa: F401 - loaded here so no task pays for it

    from app.execution import run_report, task_runner  # noqa: F401 - their template filters registered

    env = environment()
    names = [n for n in env.list_templates() if n.split("/", 1)[0] in TEMPLATE_FOLDERS]
    for name in names:
        env.get_template(name)
    # each configured secret's tables; a scanner adds only the installation token's (a millisecond)
    policy.scanner_for(policy.secrets_from_settings(get_settings()))
    redactor_for(get_settings())  # the configured secrets' expression; a live token adds its own small one
    log.info("worker_warmed", templates=len(names))
    return len(names)
