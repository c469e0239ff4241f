"""Keyed locks (app/db/locks.py): a lock whose holder is a process on this host that no longer exists
is taken over at once instead of being waited out until it expires; anyone else's lock is not."""
from __future__ import annotations

import subprocess

from app.db.locks import owner_id, try_acquire
from app.db.models import IssueLock
from app.db.session import session_scope


def _gone_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _holder(key: str) -> str:
    with session_scope() as s:
        return s.get(IssueLock, key).owner


def test_a_lock_held_by_a_killed_worker_on_this_host_is_taken_over_at_once(omoi_env):
    here = owner_id().rsplit(":", 2)[0]
    dead = f"{here}:{_gone_pid()}:deadbeef"
    assert try_acquire("octo/greeter#5", dead, 600)
    mine = owner_id()
    assert try_acquire("octo/greeter#5", mine, 600)
    assert _holder("octo/greeter#5") == mine


def test_a_live_holder_or_one_on_another_host_keeps_its_lock(omoi_env):
    live = owner_id()  # this very process: alive
    assert try_acquire("octo/greeter#6", live, 600)
    assert not try_acquire("octo/greeter#6", owner_id(), 600)
    elsewhere = f"another-host:4026531836:{_gone_pid()}:cafe"  # maybe dead, but not ours to judge
    assert try_acquire("octo/greeter#7", elsewhere, 600)
    assert not try_acquire("octo/greeter#7", owner_id(), 600)
    assert _holder("octo/greeter#6") == live and _holder("octo/greeter#7") == elsewhere
