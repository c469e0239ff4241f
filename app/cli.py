"""Command line: `python -m app serve | web | worker | beat | migrate | replay | redeliver`."""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from app.config import get_settings, reset_settings_cache
from app.db.migrate import upgrade
from app.db.session import dispose_engines
from app.observability.logs import configure_logging, get_logger
from app.observability.sentry import init_sentry
from app.text.redaction import secrets_of

log = get_logger("omoi.cli")
# The worker's Celery application, named to Celery's own command line as `celery -A` does: the
# task modules (tasks/) import app code, never the other way round.
WORKER_APP = "tasks.celery_app"


def _setup(process: str = "omoi") -> None:
    settings = get_settings()
    # Every configured secret, the private key read from its file included (app/text/redaction.py).
    configure_logging(settings.log_level, settings.log_json, sorted(secrets_of(settings)))
    init_sentry(settings, process)  # only with OMOI_SENTRY_DSN and the optional sentry-sdk


def _migrate() -> None:
    upgrade(get_settings().database_url)
    dispose_engines()  # forked workers and threads open their own connections


def cmd_migrate(_args) -> int:
    _setup()
    _migrate()
    log.info("database_migrated")
    return 0


def cmd_web(_args) -> int:
    from app.web.server import MissingWebhookSecret, create_app  # lazy: a worker never loads the web process

    _setup("web")
    settings = get_settings()
    setup = bool(getattr(_args, "setup", False))
    try:
        app = create_app(settings, setup=setup)
    except MissingWebhookSecret as exc:
        print(f"omoi: {exc}", file=sys.stderr)
        return 2
    _migrate()
    if setup and not settings.has_app_credentials():
        print(
            f"omoi: no GitHub App is configured yet. Open {settings.resolved_public_url()}/setup"
            " to register one from manifest.yml.",
            file=sys.stderr,
        )
    log.info("web_listening", host=settings.host, port=settings.port, github=settings.github_api_url,
             processes=settings.web_processes)
    if settings.web_processes <= 1:
        _run_app(app, settings)
        return 0
    return _serve_web_processes(settings, setup)


def _run_app(app, settings, **kw) -> None:
    """aiohttp's server on uvloop where it is installed (a tenth less CPU per delivery), else asyncio."""
    from aiohttp import web

    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, loop=loop, **kw)


def _serve_web_processes(settings, setup: bool) -> int:
    """`web_processes` copies of the web process on one port (SO_REUSEPORT: the kernel spreads
    connections). Each builds its own app after the fork (broker and database connections are
    per process); the parent serves too, and ends the others when it ends."""
    from app.web.server import create_app  # lazy: a worker never loads the web process

    dispose_engines()
    children: list[int] = []
    for _ in range(settings.web_processes - 1):
        pid = os.fork()
        if pid == 0:  # the child: serve until SIGTERM, never return into the parent's code
            code = 0
            try:
                _run_app(create_app(settings, setup=setup), settings, reuse_port=True)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    try:
        _run_app(create_app(settings, setup=setup), settings, reuse_port=True)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return 0


def worker_argv(settings, beat: bool) -> list[str]:
    argv = [
        "worker",
        "--loglevel=INFO",
        f"--concurrency={settings.worker_concurrency}",
        "-Q",
        settings.queue_name,
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"omoi-{os.getpid()}@%h",
    ]
    if beat:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        argv += ["-B", "-s", str(Path(settings.data_dir) / "celerybeat-schedule")]
    return argv


def _celery(argv: list[str]) -> None:
    """`celery -A tasks.celery_app <argv>`, in this process (what Celery's own `worker_main` does)."""
    from celery.bin.celery import celery as celery_command  # only a worker or beat needs Celery's command line
    from click.exceptions import Exit

    try:
        celery_command.main(args=["-A", WORKER_APP, *argv], prog_name="celery", standalone_mode=False)
    except Exit:
        pass


def cmd_worker(args) -> int:
    _setup("worker")
    _migrate()
    _celery(worker_argv(get_settings(), beat=args.beat))
    return 0


def cmd_beat(_args) -> int:
    _setup()
    settings = get_settings()
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    _celery(["beat", "-s", str(Path(settings.data_dir) / "celerybeat-schedule")])
    return 0


def _ensure_dev_secret() -> None:
    """`serve` is the single-machine default: create a webhook secret once rather than refuse."""
    settings = get_settings()
    if settings.webhook_secret is not None and settings.webhook_secret.get_secret_value():
        return
    env_path = Path(".env")
    secret = secrets.token_hex(32)
    with open(env_path, "a") as fh:
        fh.write(f"\nOMOI_WEBHOOK_SECRET={secret}\n")
    env_path.chmod(0o600)
    reset_settings_cache()
    print(
        "omoi: no OMOI_WEBHOOK_SECRET was set, so one was generated and saved to .env.\n"
        "      Put the same value in your GitHub App's webhook secret (see README).",
        file=sys.stderr,
    )


def cmd_serve(_args) -> int:
    """Web and an embedded worker (with the beat scheduler) in one process group."""
    _ensure_dev_secret()
    _setup()
    _migrate()  # once, before either process starts
    _args.setup = True  # first run without App credentials: offer the manifest flow (app/web/setup.py)
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker", "--beat"])

    def _stop(signum, _frame):
        worker.terminate()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        return cmd_web(_args)
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


def cmd_replay(args) -> int:
    """Sign a payload file like GitHub does and send it to a running omoi."""
    import hashlib
    import hmac
    import json
    import urllib.error
    import urllib.request

    settings = get_settings()
    if settings.webhook_secret is None:
        print("omoi: OMOI_WEBHOOK_SECRET is not set", file=sys.stderr)
        return 2
    try:
        body = Path(args.payload).read_bytes()
        json.loads(body)  # fail early on a broken file
    except (OSError, ValueError) as exc:
        print(f"omoi: cannot replay {args.payload}: {exc}", file=sys.stderr)
        return 2
    sig = "sha256=" + hmac.new(settings.webhook_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    url = args.url or f"http://{settings.host}:{settings.port}/webhooks/github"
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-GitHub-Event": args.event,
        "X-GitHub-Delivery": args.delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sig,
        "User-Agent": "omoi-replay",
    })
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            print(resp.status, resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
        return 1
    except urllib.error.URLError as exc:
        print(f"omoi: cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1


def cmd_redeliver(args) -> int:
    """One sweep of GitHub's delivery log (app/intake/redelivery.py): redeliver what never reached omoi."""
    import json

    # lazy: the GitHub client and the delivery log are only for this command, not for the web process
    from app.intake.redelivery import sweep_github_deliveries

    _setup()
    settings = get_settings()
    if not settings.has_app_credentials():
        print("omoi: OMOI_GITHUB_APP_ID and OMOI_GITHUB_PRIVATE_KEY (or _PATH) must be set", file=sys.stderr)
        return 2
    _migrate()
    report = sweep_github_deliveries(settings, dry_run=args.dry_run)
    print(json.dumps(report.as_dict(), indent=2))
    return 1 if report.error else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="omoi GitHub App")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="web + embedded worker on one machine (default setup)").set_defaults(func=cmd_serve)
    wp = sub.add_parser("web", help="the webhook web process only")
    wp.add_argument("--setup", action="store_true",
                    help="while no App credentials exist, serve /setup to register the App (manifest flow)")
    wp.set_defaults(func=cmd_web)
    w = sub.add_parser("worker", help="a Celery worker")
    w.add_argument("--beat", action="store_true", help="also run the periodic scheduler")
    w.set_defaults(func=cmd_worker)
    sub.add_parser("beat", help="the periodic scheduler").set_defaults(func=cmd_beat)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    r = sub.add_parser("replay", help="sign and send a webhook payload file to omoi")
    r.add_argument("payload")
    r.add_argument("--event", required=True)
    r.add_argument("--delivery")
    r.add_argument("--url")
    r.set_defaults(func=cmd_replay)
    rd = sub.add_parser("redeliver", help="ask GitHub to redeliver recent deliveries that never reached omoi")
    rd.add_argument("--dry-run", action="store_true", help="only list what would be redelivered")
    rd.set_defaults(func=cmd_redeliver)
    args = parser.parse_args(argv)
    return args.func(args)
