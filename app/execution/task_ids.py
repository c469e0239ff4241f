"""Task ids (T1, T2, ...): the number in one, which orders tasks for people and numbers new ones."""
from __future__ import annotations

import re


def task_number(task_id: str) -> int:
    m = re.search(r"\d+", task_id)
    return int(m.group()) if m else 0
