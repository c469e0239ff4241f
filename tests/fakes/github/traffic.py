"""Recorded traffic and fault injection: the requests the stand-in saw (``fake.calls``) and the
failures a test queued (``fake.fail_next``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDict


@dataclass
class Call:
    """One request seen by the fake (``path`` is percent-decoded, without the query)."""

    method: str
    path: str
    query: dict[str, Any]
    json: Any
    headers: CIMultiDict[str]  # case-insensitive, like the server saw them
    status: int


@dataclass
class _Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    remaining: int
    performed: bool = False  # GitHub did the work, then the answer was lost (a 502 from the edge)

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path_regex.search(path) is not None
