"""The hidden `<!-- omoi:... -->` comments that let omoi find its own comments again, defined once.

Each marker is a kind and its attributes in a fixed order, e.g. `<!-- omoi:run spec=12 -->`. The
templates write them through the `markers` global (app/text/rendering.py: `{{ markers.run(spec=id) }}`);
Python finds a comment again by a marker's `prefix` (the kind and its leading attributes, ending in a
space so `spec=1` never matches `spec=12`) or reads one with `parse`. Nothing else spells a marker
(tests/unit/test_templates.py checks). Kept in app/text, beside the renderer that registers it: app/github
imports the renderer, so a module there would make the two packages import each other.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

OPEN, CLOSE = "<!-- omoi:", " -->"
# Any of our markers in a text: the kind and its raw attributes (`key=value` pairs).
FIND = re.compile(r"<!-- omoi:([a-z][a-z-]*)((?: [a-z]+=\S*)*) -->")


@dataclass(frozen=True)
class Marker:
    kind: str
    keys: tuple[str, ...] = ()

    def _parts(self, attrs: dict) -> list[str]:
        unknown = set(attrs) - set(self.keys)
        if unknown:
            raise ValueError(f"marker {self.kind} has no attribute {sorted(unknown)}")
        return [f"{k}={attrs[k]}" for k in self.keys if attrs.get(k) is not None]

    def __call__(self, **attrs) -> str:
        """The whole hidden comment, e.g. `<!-- omoi:run spec=12 -->`."""
        return OPEN + " ".join([self.kind, *self._parts(attrs)]) + CLOSE

    def prefix(self, **attrs) -> str:
        """The start of the comment up to the given attributes (which must be the leading ones):
        what `app.github.comments.find_marked` looks for."""
        given = [k for k in self.keys if k in attrs]
        if given != list(self.keys[:len(given)]):
            raise ValueError(f"marker {self.kind}: a prefix takes the leading attributes of {self.keys}")
        return OPEN + " ".join([self.kind, *self._parts(attrs)]) + " "

    def parse(self, text: str) -> dict[str, str] | None:
        """The attributes of the first such marker in `text`, or None."""
        for m in FIND.finditer(text or ""):
            if m.group(1) == self.kind:
                return dict(pair.split("=", 1) for pair in m.group(2).split())
        return None


ACK = Marker("ack", ("issue",))
REFUSED = Marker("refused")
REPLY = Marker("reply", ("to",))
CONFIG_ERROR = Marker("config-error", ("sha",))
SPEC = Marker("spec", ("stage", "rev", "hash"))
ERROR = Marker("error", ("stage",))
RUN = Marker("run", ("spec",))
PR = Marker("pr", ("spec",))
DISCOVERY = Marker("discovery", ("id", "spec"))
REVIEW = Marker("review", ("round",))
NOTICE = Marker("notice", ("spec", "what"))  # one per spec and kind: an ending, an issue edit (issue 16)
REVIEW_REPLY = Marker("review-reply", ("thread", "round"))
CI = Marker("ci", ("spec",))

ALL = (ACK, REFUSED, REPLY, CONFIG_ERROR, SPEC, ERROR, RUN, PR, DISCOVERY, REVIEW, REVIEW_REPLY, CI, NOTICE)


class _Namespace:
    """`markers.<name>(...)` in templates: the kind with `-` spelled `_` (`markers.review_reply`)."""

    def __init__(self) -> None:
        for m in ALL:
            setattr(self, m.kind.replace("-", "_"), m)


TEMPLATE_GLOBAL = _Namespace()
