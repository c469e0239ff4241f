"""A worker killed while publishing a run leaves the publish lock behind, and the state others wanted
shown waits behind it: once the lock is free (expired), the health sweep finds that spec to publish."""
from __future__ import annotations

from datetime import timedelta

from app.config import get_settings
from app.db.locks import try_acquire
from app.db.models import IssueLock
from app.db.session import session_scope
from app.execution.run_report import PUBLISH_LOCK_SECONDS, publishes_wanted
from app.timeutil import utc_now


def test_a_wanted_publish_behind_a_dead_publisher_is_found_once_its_lock_expires(omoi_env):
    settings = get_settings()
    assert try_acquire("publish:spec:7", "dead-worker", PUBLISH_LOCK_SECONDS)  # killed while publishing
    assert try_acquire("publish-wanted:spec:7", "another-worker", 600)  # wanted the newest state meanwhile
    assert try_acquire("publish-wanted:spec:8", "another-worker", 600)  # nobody holds 8's lock
    assert publishes_wanted(settings) == [8]  # 7 waits: its publisher may still be alive
    with session_scope() as s:  # ... until the dead worker's lock runs out
        s.get(IssueLock, "publish:spec:7").expires_at = utc_now() - timedelta(seconds=1)
    assert publishes_wanted(settings) == [7, 8]
