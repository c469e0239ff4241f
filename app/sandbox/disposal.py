"""Removing a finished sandbox's or commit clone's directory without slowing the tasks still running.

`dispose` renames the directory into a `.omoi-trash` directory beside it (one syscall: from then on
nothing finds it under its old name) and leaves the removal to one low-priority `rm -rf` at a time,
outside this process. When a level of a wide task graph ends, ten sandboxes and ten clones were
removed at once by `shutil.rmtree` in this process's threads, competing for the GIL and the two
cores with the integrator and the scheduler that decide when the next level starts
(benchmarks/dag_run.py). A directory the process did not live to remove stays in the trash until a
housekeeping sweep (`sweep`) removes it: nothing in a trash directory is in use.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from app.observability.logs import get_logger

log = get_logger("omoi.disposal")
TRASH = ".omoi-trash"
_NICE = ["nice", "-n", "19"] if shutil.which("nice") else []  # coreutils; without it, rm at normal priority
_queue: queue.SimpleQueue = queue.SimpleQueue()
_lock = threading.Lock()
_reaper: list[threading.Thread] = []


def dispose(path: Path | str) -> None:
    """Remove `path` (a directory omoi made) soon, off the caller's path. Returns at once."""
    path = Path(path)
    trash = path.parent / TRASH
    try:
        trash.mkdir(mode=0o700, exist_ok=True)
        target = trash / f"{path.name}-{uuid.uuid4().hex[:12]}"
        os.rename(path, target)
    except FileNotFoundError:  # already gone
        return
    except OSError:  # not renamable (another file system, no permission): removed here and now
        shutil.rmtree(path, ignore_errors=True)
        return
    _start()
    _queue.put(target)


def sweep(parent: Path) -> int:
    """Remove what a process left in `parent`'s trash (it died before its reaper got there)."""
    trash = parent / TRASH
    try:
        entries = list(trash.iterdir())
    except OSError:
        return 0
    _remove(entries)
    return len(entries)


def _start() -> None:
    with _lock:
        # one reaper per process; a forked child (Celery's pool) starts its own
        if not _reaper or not _reaper[0].is_alive():
            _reaper[:] = [threading.Thread(target=_reap, name="omoi-disposal", daemon=True)]
            _reaper[0].start()


def _reap() -> None:
    while True:
        paths = [_queue.get()]
        while True:  # everything queued meanwhile goes to the same rm
            try:
                paths.append(_queue.get_nowait())
            except queue.Empty:
                break
        _remove(paths)


def _remove(paths: list[Path]) -> None:
    try:
        subprocess.run([*_NICE, "rm", "-rf", "--", *map(str, paths)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("disposal_rm_failed", error=str(exc)[:200])
    for path in paths:  # what rm could not remove (or no rm at all): one more try in Python
        if os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
