"""Recorded traffic and fault injection: the requests the stand-in saw (``fake.calls``) and the
failures a test queued (``fake.fail_next``). A Call knows its kind (REST, GraphQL or git smart HTTP),
whether it wrote something and whether it was answered 304 Not Modified, so a test can count what
an App costs at the wire (``summarize``)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
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
    at: float = field(default_factory=time.monotonic, compare=False)  # when it was recorded (spacing tests)

    @property
    def kind(self) -> str:
        """``git`` (smart HTTP: clones, fetches, pushes), ``graphql`` or ``rest``."""
        if _GIT_TAIL.search(self.path):
            return "git"
        return "graphql" if self.path.rstrip("/").endswith("/graphql") else "rest"

    @property
    def is_write(self) -> bool:
        """It changes something on GitHub: a REST POST/PATCH/PUT/DELETE or a GraphQL mutation
        (minting an installation token changes nothing a person sees, so it is not a write)."""
        if self.kind == "git":
            return self.path.endswith("git-receive-pack")
        if self.kind == "graphql":
            query = (self.json or {}).get("query", "") if isinstance(self.json, dict) else ""
            return query.lstrip().startswith("mutation")
        return self.method in ("POST", "PATCH", "PUT", "DELETE") and not _TOKEN_PATH.search(self.path)

    @property
    def not_modified(self) -> bool:
        """Answered 304 to a conditional request: GitHub does not count it against the rate limit."""
        return self.status == 304

    def line(self) -> str:
        """One line for a report: method, path, status, and a GraphQL operation's first words."""
        extra = ""
        if self.kind == "graphql" and isinstance(self.json, dict):
            extra = " " + " ".join(str(self.json.get("query", "")).split())[:60]
        return f"{self.method} {self.path} -> {self.status}{extra}"


_GIT_TAIL = re.compile(r"/(info/refs|git-upload-pack|git-receive-pack)$")
_TOKEN_PATH = re.compile(r"^/app/installations/\d+/access_tokens$")


@dataclass
class Tally:
    """What a slice of the traffic cost: API calls (REST + GraphQL, 304s included), how many of
    them were 304s and writes, and git smart-HTTP requests (counted apart)."""

    api: int
    not_modified: int
    writes: int
    git: int
    lines: list[str]

    def __str__(self) -> str:
        return (f"{self.api} API calls ({self.not_modified} answered 304, {self.writes} writes), "
                f"{self.git} git requests")


def summarize(calls: list[Call]) -> Tally:
    api = [c for c in calls if c.kind != "git"]
    return Tally(len(api), sum(c.not_modified for c in api), sum(c.is_write for c in api),
                 len(calls) - len(api), [c.line() for c in api])


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
