"""Path templates: the spec's ``/repos/{owner}/{repo}/...`` templates compiled to regexes, matched
on the raw (still percent-encoded) path, most literal first."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote


_VAR_RE = re.compile(r"\{([^}/]+)\}")


@dataclass(frozen=True)
class PathTemplate:
    """A compiled path template such as ``/repos/{owner}/{repo}/issues/{issue_number}``.

    ``multi_segment`` names variables that may contain ``/`` (the spec marks
    them with ``x-multi-segment``, e.g. the file ``path`` of the contents API
    or a git ``ref`` like ``heads/main``). Matching is done on the *raw*
    (still percent-encoded) path so that ``%2F`` inside a label name stays in
    one segment; captured values are unquoted afterwards.
    """

    template: str
    regex: re.Pattern[str] = field(compare=False)
    variables: tuple[str, ...] = field(compare=False)
    literal_chars: int = field(compare=False)

    def match(self, raw_path: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(raw_path)
        if m is None:
            return None
        return {k: unquote(v) for k, v in m.groupdict().items()}

    @property
    def specificity(self) -> tuple[int, int]:
        # "Most literal wins": more literal characters first, then fewer
        # variables. e.g. /repos/{o}/{r}/issues/comments/{comment_id} beats
        # /repos/{o}/{r}/issues/{issue_number}/{x} for .../issues/comments/5.
        return (self.literal_chars, -len(self.variables))


def compile_template(template: str, multi_segment: frozenset[str] | set[str] = frozenset()) -> PathTemplate:
    parts: list[str] = []
    variables: list[str] = []
    literal = 0
    pos = 0
    for m in _VAR_RE.finditer(template):
        lit = template[pos : m.start()]
        parts.append(re.escape(lit))
        literal += len(lit)
        name = m.group(1)
        group = re.sub(r"\W", "_", name)
        if group in variables:  # never happens in GitHub's spec, but keep regex valid
            group = f"{group}_{len(variables)}"
        variables.append(group)
        parts.append(f"(?P<{group}>{'.+' if name in multi_segment else '[^/]+'})")
        pos = m.end()
    tail = template[pos:]
    parts.append(re.escape(tail))
    literal += len(tail)
    return PathTemplate(template, re.compile("".join(parts)), tuple(variables), literal)
