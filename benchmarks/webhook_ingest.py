"""Webhook ingestion: deliveries per second and time-to-202 for signed deliveries.

Starts the real web process (`python -m app web`) against each backend, sends signed
`issues.labeled` deliveries from this process over loopback, and prints the figures.

    .venv/bin/python benchmarks/webhook_ingest.py [--count 2000] [--concurrency 16] [--web-processes 1]

Each request has a 10 s limit (GitHub's); a timeout or a refused connection counts as an error.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _webhooks import REDIS_URL, backends, scratch, signed, start_omoi_web, stop  # noqa: E402

import aiohttp

SECRET = "bench-secret"


async def drive(url: str, count: int, concurrency: int) -> dict:
    bodies = [signed(i, SECRET) for i in range(count)]
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            body, headers = bodies[i]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--web-processes", type=int, default=1)
    args = parser.parse_args()
    with scratch("ingest-") as d:
        tmp = Path(d)
        configured = backends(tmp, "omoi_bench")
        for name, env in configured:
            proc, url = start_omoi_web(env, tmp, SECRET, args.web_processes)
            try:
                asyncio.run(drive(url, 50, 4))  # warm-up
                r = asyncio.run(drive(url, args.count, args.concurrency))
            finally:
                stop(proc)
            print(f"{name:26s} {r['per_second']:7.0f} deliveries/s  p50 {r['p50_ms']:6.1f} ms  "
                  f"p99 {r['p99_ms']:6.1f} ms  errors {r['errors']}  ({r['deliveries']} deliveries, "
                  f"concurrency {args.concurrency})")
        if len(configured) > 1:
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()


if __name__ == "__main__":
    main()
