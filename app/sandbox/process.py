"""Running a (jailed) command as a child of omoi: bounded output, a timeout, an optional limit watch,
and nothing it started left behind when it ends."""
from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from app.sandbox.base import NOTES, ExecResult
from app.text.rendering import render_line


async def _drain(stream: asyncio.StreamReader | None, limit: int | None) -> tuple[bytes, bool]:
    """Read a pipe to EOF, keeping at most `limit` bytes; returns (data, truncated)."""
    if stream is None:
        return b"", False
    buf = bytearray()
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if limit is not None and len(buf) + len(chunk) > limit:
            buf += chunk[: max(0, limit - len(buf))]
            truncated = True
        else:
            buf += chunk
    return bytes(buf), truncated


def _decode(out: tuple[bytes, bool], limit: int | None) -> str:
    data, truncated = out
    text = data.decode("utf-8", errors="replace")
    return text + "\n" + render_line(NOTES, part="truncated", limit=limit) if truncated else text


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_process(argv: list[str], *, cwd: str, env: dict, timeout: float, limit: int | None,
                      running: set[int] | None = None, pass_fds: tuple[int, ...] = (),
                      watch: Any = None, kill: Any = None) -> ExecResult:
    """Run `argv`; kill its process group on timeout, or when `watch()` (polled in a thread every 2 s)
    returns a reason (a sandbox limit was exceeded)."""
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            pass_fds=pass_fds,
        )
    except OSError as exc:
        return ExecResult(127, "", render_line(NOTES, part="cannot_start", program=argv[0], error=exc), time.monotonic() - started)
    if running is not None:
        running.add(proc.pid)
    readers = [asyncio.ensure_future(_drain(proc.stdout, limit)), asyncio.ensure_future(_drain(proc.stderr, limit))]
    timed_out = False
    exceeded: list[str] = []

    def stop() -> None:
        if kill is not None:
            kill(proc.pid)  # the jail's PID namespace (its processes may have left our process group)
        kill_group(proc.pid)

    try:
        try:
            await asyncio.wait_for(_wait_watched(proc, watch, exceeded, stop), timeout)
        except asyncio.TimeoutError:
            timed_out = True
        # Nothing a command started survives it (under bwrap the PID namespace is gone already).
        stop()
        await proc.wait()
        done, pending = await asyncio.wait(readers, timeout=5)
        for task in pending:
            task.cancel()
        outs = [t.result() if t in done and not t.cancelled() and t.exception() is None else (b"", False)
                for t in readers]
    except asyncio.CancelledError:
        stop()
        for task in readers:
            task.cancel()
        raise
    finally:
        if running is not None:
            running.discard(proc.pid)
    rc = proc.returncode if proc.returncode is not None else -1
    if rc < 0:
        rc = 128 - rc  # killed by a signal: shell convention
    stderr = _decode(outs[1], limit)
    if timed_out:
        stderr += "\n" + render_line(NOTES, part="timed_out", seconds=timeout, killed=True)
    if exceeded:
        stderr += "\n" + render_line(NOTES, part="killed", why=exceeded[0])
        rc = rc or 137
    return ExecResult(rc, _decode(outs[0], limit), stderr, time.monotonic() - started, timed_out)


async def _wait_watched(proc: asyncio.subprocess.Process, watch: Any, exceeded: list[str], stop: Any) -> None:
    if watch is None:
        await proc.wait()
        return
    while True:
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), 2.0)
            return
        except asyncio.TimeoutError:
            reason = await asyncio.to_thread(watch)
            if reason:
                exceeded.append(reason)
                stop()
                await proc.wait()
                return


__all__ = ["run_process", "kill_group"]
