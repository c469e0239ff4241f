"""Webhook load: omoi's web process under a fixed rate and at full speed, next to a minimal Probot app.

Starts the real web process (`python -m app web`) on SQLite + the embedded broker, and on
PostgreSQL + Redis when they answer; installs Probot (`npm install probot@PROBOT_VERSION` into a
temp dir) and runs a tiny Probot app that verifies the signature and answers, without GitHub
calls. A second OS process drives each target over loopback with signed `issues.labeled`
deliveries and reports back:

* fixed rate: `--rate` deliveries/s for `--duration` s, open loop (each request is sent at its
  scheduled time whether or not earlier ones were answered; latency is counted from the scheduled
  time, so a stalled server cannot hide its queueing delay);
* max throughput: `--concurrency` connections sending back to back for `--max-duration` s.

It prints throughput, p50/p99 time to 2xx and errors (non-2xx, timeouts, refused connections),
and omoi/Probot ratios.

    .venv/bin/python benchmarks/webhook_load.py [--rate 200] [--duration 20] [--max-duration 10]
        [--concurrency 64] [--repeat 1] [--web-processes 1] [--no-probot] [--no-postgres]

With `--repeat N` every target is measured N times (interleaved, so a noisy neighbour hurts
all of them alike) and the summary gives the median and the range. Every step has a time
limit (start-up 60 s, each measurement its duration + 120 s, npm install 600 s).

What the comparison is and is not: both answer only after verifying the HMAC; omoi also commits
the delivery to its database and enqueues a task before it answers (so nothing acknowledged is
lost), Probot runs its (empty) handlers in memory and stores nothing. Probot needs an App id and
a private key to start even though it never calls GitHub here: a throwaway key is generated.
The load generator shares the machine (and its cores) with the server under test.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _webhooks import (  # noqa: E402
    PG_URL, REDIS_URL, ROOT, backends, free_port, scratch, signed, start_omoi_web, stop, wait_http,
)

SECRET = "bench-load-secret"
PROBOT_VERSION = "13.4.7"  # 14.x needs Node >= 22; these machines have Node 20

PROBOT_APP = r"""
const http = require("node:http");
const { createProbot, createNodeMiddleware } = require("probot");

const probot = createProbot({
  overrides: {
    appId: 1,
    privateKey: process.env.BENCH_PRIVATE_KEY,
    secret: process.env.BENCH_WEBHOOK_SECRET,
    logLevel: "error",
  },
});
const appFn = (app) => {
  app.on("issues.labeled", async () => {});  // verify, route, answer: no GitHub calls
};
const middleware = createNodeMiddleware(appFn, { probot, webhooksPath: "/webhooks/github" });
const server = http.createServer((req, res) => {
  if (req.url === "/healthz") { res.writeHead(200); res.end("ok"); return; }
  middleware(req, res, () => { res.writeHead(404); res.end(); });
});
server.keepAliveTimeout = 65000;
server.listen(Number(process.env.BENCH_PORT), "127.0.0.1", () => console.log("ready"));
"""


def start_omoi(env: dict, workdir: Path, web_processes: int = 1) -> tuple[subprocess.Popen, str]:
    proc, url = start_omoi_web(env, workdir, SECRET, web_processes)
    return proc, url + "/webhooks/github"


def install_probot(workdir: Path) -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError("node/npm are not installed")
    app_dir = workdir / "probot-app"
    app_dir.mkdir()
    (app_dir / "package.json").write_text(json.dumps({"name": "omoi-bench-probot", "private": True}))
    started = time.monotonic()
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"probot@{PROBOT_VERSION}"],
                          cwd=app_dir, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"npm install probot@{PROBOT_VERSION} failed: {done.stderr.strip()[-500:]}")
    print(f"(installed probot@{PROBOT_VERSION} in {time.monotonic() - started:.0f} s)")
    (app_dir / "app.js").write_text(PROBOT_APP)
    return app_dir


def throwaway_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def start_probot(app_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(app_dir), "NODE_ENV": "production",
           "BENCH_PORT": str(port), "BENCH_WEBHOOK_SECRET": SECRET, "BENCH_PRIVATE_KEY": throwaway_private_key()}
    proc = subprocess.Popen(["node", "app.js"], cwd=app_dir, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(app_dir / "probot.log", "wb"))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc, "probot app")
    return proc, url + "/webhooks/github"


# --------------------------------------------------------------------------------------------
# the load generator (runs in its own process: `--drive '<json>'`)


def _summary(latencies: list[float], errors: int, sent: int, elapsed: float, statuses: dict) -> dict:
    latencies.sort()
    ok = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(ok - 1, int(ok * p))] * 1000 if ok else float("nan")

    return {"sent": sent, "ok": ok, "errors": errors, "elapsed_s": elapsed, "per_second": ok / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000 if ok else float("nan"),
            "statuses": statuses}


async def _send(session, url: str, i: int, latencies, statuses, since: float | None = None) -> bool:
    body, headers = signed(i, SECRET)
    t0 = time.perf_counter() if since is None else since
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
            if 200 <= resp.status < 300:
                latencies.append(time.perf_counter() - t0)
                return True
    except Exception as exc:  # noqa: BLE001 - refused, reset, timed out: all errors
        statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
    return False


async def fixed_rate(url: str, rate: float, duration: float) -> dict:
    import aiohttp

    count = int(rate * duration)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=10)  # GitHub's own limit for an answer
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000), timeout=timeout) as session:
        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(session, url, i, latencies, statuses, since=scheduled)))
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return _summary(latencies, results.count(False), count, elapsed, statuses)


async def max_throughput(url: str, concurrency: int, duration: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(10**9))
    failures = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        t0 = time.perf_counter()
        deadline = t0 + duration

        async def worker() -> None:
            nonlocal failures
            while time.perf_counter() < deadline:
                if not await _send(session, url, next(counter), latencies, statuses):
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return _summary(latencies, failures, len(latencies) + failures, elapsed, statuses)


def drive_main(spec: dict) -> None:
    asyncio.run(fixed_rate(spec["url"], 20, 1))  # warm-up: connections, caches, JIT
    if spec["mode"] == "rate":
        result = asyncio.run(fixed_rate(spec["url"], spec["rate"], spec["duration"]))
    else:
        result = asyncio.run(max_throughput(spec["url"], spec["concurrency"], spec["duration"]))
    print(json.dumps(result))


def drive(spec: dict) -> dict:
    """Run the load generator as a second OS process and read its JSON result."""
    done = subprocess.run([sys.executable, __file__, "--drive", json.dumps(spec)], capture_output=True, text=True,
                          timeout=spec["duration"] + 120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------


def omoi_backends(tmp: Path, with_postgres: bool) -> list[tuple[str, dict]]:
    return [(f"omoi {name}", env) for name, env in backends(tmp, "omoi_bench_load", with_postgres)]


def _aggregate(rs: list[dict]) -> dict:
    """The median round of each figure (errors: the total), with the throughput and p99 range."""
    out = {k: statistics.median(r[k] for r in rs) for k in ("per_second", "p50_ms", "p99_ms", "max_ms", "elapsed_s")}
    out.update(errors=sum(r["errors"] for r in rs), ok=sum(r["ok"] for r in rs), sent=sum(r["sent"] for r in rs),
               per_second_min=min(r["per_second"] for r in rs), per_second_max=max(r["per_second"] for r in rs),
               p99_ms_min=min(r["p99_ms"] for r in rs), p99_ms_max=max(r["p99_ms"] for r in rs), rounds=len(rs))
    return out


def fmt(name: str, mode: str, r: dict) -> str:
    return (f"{name:24s} {mode:14s} {r['per_second']:8.0f}/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
            f"max {r['max_ms']:7.1f} ms  errors {r['errors']:4d}  ({r['ok']}/{r['sent']} 2xx)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--max-duration", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="rounds per target; the summary is the median")
    parser.add_argument("--web-processes", type=int, default=1, help="OMOI_WEB_PROCESSES for omoi's web process")
    parser.add_argument("--no-probot", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive_main(json.loads(args.drive))
        return 0

    runs: dict[str, dict[str, list[dict]]] = {}
    with scratch("load-") as d:
        tmp = Path(d)
        targets: list[tuple[str, callable]] = [
            (name, (lambda env=env: start_omoi(env, tmp, args.web_processes)))
            for name, env in omoi_backends(tmp, not args.no_postgres)
        ]
        if not args.no_probot:
            try:
                app_dir = install_probot(tmp)
                targets.append((f"probot {PROBOT_VERSION}", lambda: start_probot(app_dir)))
            except Exception as exc:  # noqa: BLE001
                print(f"(probot skipped: {exc})")
        print(f"fixed rate: {args.rate:.0f}/s for {args.duration:.0f} s; max: {args.concurrency} connections for "
              f"{args.max_duration:.0f} s; {args.repeat} round(s); omoi web processes: {args.web_processes}; "
              f"{os.cpu_count()} CPUs shared by server and load generator", flush=True)
        for round_no in range(1, args.repeat + 1):
            for name, start in targets:
                proc, url = start()
                try:
                    got = {
                        "fixed rate": drive({"url": url, "mode": "rate", "rate": args.rate, "duration": args.duration}),
                        "max": drive({"url": url, "mode": "max", "concurrency": args.concurrency,
                                      "duration": args.max_duration}),
                    }
                finally:
                    stop(proc)
                for mode, r in got.items():
                    runs.setdefault(name, {}).setdefault(mode, []).append(r)
                    print(f"[{round_no}] " + fmt(name, mode, r), flush=True)
        results = {name: {mode: _aggregate(rs) for mode, rs in modes.items()} for name, modes in runs.items()}
        if args.repeat > 1:
            print(f"median of {args.repeat} rounds (range):")
            for name, modes in results.items():
                for mode, r in modes.items():
                    print(fmt(name, mode, r) + f"  [{r['per_second_min']:.0f}-{r['per_second_max']:.0f}/s, "
                          f"p99 {r['p99_ms_min']:.1f}-{r['p99_ms_max']:.1f} ms]")
        probot = next((r for n, r in results.items() if n.startswith("probot")), None)
        for name, r in results.items():
            if not name.startswith("omoi"):
                continue
            fr, mx = r["fixed rate"], r["max"]
            verdict = (f"p99 at {args.rate:.0f}/s {'<' if fr['p99_ms'] < 50 else '>='} 50 ms, "
                       f"errors {fr['errors'] + mx['errors']}")
            if probot:
                ratio = mx["per_second"] / probot["max"]["per_second"]
                print(f"{name} / probot: max throughput x{ratio:.2f} "
                      f"({mx['per_second']:.0f}/s vs {probot['max']['per_second']:.0f}/s), "
                      f"fixed-rate p50 x{fr['p50_ms'] / probot['fixed rate']['p50_ms']:.2f}, "
                      f"p99 x{fr['p99_ms'] / probot['fixed rate']['p99_ms']:.2f}; {verdict}")
            else:
                print(f"{name}: {verdict}")
        if any(n.startswith("omoi postgresql") for n in results):
            import psycopg
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
            with psycopg.connect(PG_URL, autocommit=True) as c:
                c.execute("DROP DATABASE IF EXISTS omoi_bench_load WITH (FORCE)")
    if args.json:
        Path(args.json).write_text(json.dumps({"median": results, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
