"""Webhook ingestion: deliveries per second and time-to-202 for signed deliveries.

Starts the real web process (`python -m app web`) against each backend, sends signed
`issues.labeled` deliveries from this process over loopback, and prints the figures.

    .venv/bin/python benchmarks/webhook_ingest.py [--count 2000] [--concurrency 16] [--web-processes 1]

Each request has a 10 s limit (GitHub's); a timeout or a refused connection counts as an error.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(i: int) -> bytes:
    return json.dumps({
        "action": "labeled",
        "issue": {"number": i, "title": f"Issue {i}", "body": "x" * 2000, "user": {"login": "alice"}},
        "label": {"name": "omoi"},
        "repository": {"id": 1, "full_name": "octo/hello", "default_branch": "main"},
        "sender": {"login": "alice", "id": 1, "type": "User"},
        "installation": {"id": 1},
    }).encode()


def start_web(env: dict, workdir: Path, web_processes: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "web"], cwd=workdir,
        env={**os.environ, **env, "OMOI_PORT": str(port), "OMOI_WEBHOOK_SECRET": SECRET,
             "OMOI_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "OMOI_WEB_PROCESSES": str(web_processes),
             # a queue of this run only: a worker of someone else sharing the Redis never sees it
             "OMOI_QUEUE_NAME": f"omoi-bench-{uuid.uuid4().hex[:8]}"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return proc, url
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("web process did not start")


async def drive(url: str, count: int, concurrency: int) -> dict:
    bodies = [payload(i) for i in range(count)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            body = bodies[i]
            headers = {
                "Content-Type": "application/json", "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
            }
            t0 = time.perf_counter()
            try:
                async with session.post(url + "/webhooks/github", data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 202:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
            latencies.append(time.perf_counter() - t0)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    latencies.sort()
    return {
        "deliveries": count,
        "per_second": count / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": errors,
    }


def backends(tmp: Path) -> list[tuple[str, dict]]:
    out = [("sqlite + embedded broker", {
        "OMOI_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "OMOI_BROKER_URL": "", "OMOI_DATA_DIR": str(tmp / "data")})]
    try:
        import psycopg
        import redis

        psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", connect_timeout=2).close()
        redis.Redis(socket_connect_timeout=2).ping()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS omoi_bench WITH (FORCE)")
            c.execute("CREATE DATABASE omoi_bench")
        out.append(("postgresql + redis", {
            "OMOI_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/omoi_bench",
            "OMOI_BROKER_URL": "redis://127.0.0.1:6379/14", "OMOI_DATA_DIR": str(tmp / "data2")}))
    except Exception as exc:  # noqa: BLE001
        print(f"(postgresql + redis skipped: {exc.__class__.__name__})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--web-processes", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        configured = backends(tmp)
        for name, env in configured:
            proc, url = start_web(env, tmp, args.web_processes)
            try:
                asyncio.run(drive(url, 50, 4))  # warm-up
                r = asyncio.run(drive(url, args.count, args.concurrency))
            finally:
                proc.terminate()  # with several web processes, the first ends the others
                proc.wait(timeout=30)
            print(f"{name:26s} {r['per_second']:7.0f} deliveries/s  p50 {r['p50_ms']:6.1f} ms  "
                  f"p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}  ({r['deliveries']} deliveries, "
                  f"concurrency {args.concurrency})")
        if len(configured) > 1:
            import redis

            redis.Redis(db=14).flushdb()


if __name__ == "__main__":
    main()
