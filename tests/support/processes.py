"""omoi's real processes (`python -m app web | worker | serve ...`) as separate OS processes of
their own process group: started in a work dir with an environment, waited for until the web
process answers /healthz, stopped by group; and the message Celery beat sends to sweep deliveries."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.env import ROOT


class OmoiProcesses:
    """The real web process and real Celery workers, as separate OS processes."""

    def __init__(self, env: dict, workdir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.workdir = workdir
        self.port = int(env["OMOI_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=self.workdir, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs.get("web") and self.procs["web"].poll() is not None:
                raise RuntimeError("web process exited:\n" + self.log_text("web"))
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        raise TimeoutError("omoi web did not become healthy:\n" + self.log_text("web"))

    def log_text(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self, name: str, sig: int = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)

    def stop_all(self, grace: float = 1.5) -> None:
        """Teardown: SIGTERM to every process at once, SIGKILL what is still running after `grace` s (a
        Celery worker's warm shutdown can take seconds; nothing here depends on it)."""
        procs = [p for p in (self.procs.pop(n) for n in list(self.procs)) if p.poll() is None]
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


def send_sweep(env: dict) -> None:
    """What Celery beat does every minute: ask a worker to re-enqueue unfinished deliveries (the
    worker's own recovery sweep), through the broker of the processes whose environment is `env`."""
    from app.config import Settings
    from tasks.celery_app import make_celery

    # kombu's filesystem transport writes its control exchange relative to the working directory
    Path(env["OMOI_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(env["OMOI_DATA_DIR"]):
        celery = make_celery(Settings(broker_url=env["OMOI_BROKER_URL"], data_dir=env["OMOI_DATA_DIR"],
                                      queue_name=env["OMOI_QUEUE_NAME"], database_url=env["OMOI_DATABASE_URL"]))
        try:
            celery.send_task("omoi.sweep_deliveries")
        finally:
            celery.close()
