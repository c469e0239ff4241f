"""The slash-command grammar: turn a comment body into a list of commands.

Pure functions only -- no I/O, no clock, no config.  Permission checks, replies
and state changes live elsewhere; this module only answers "what did the
commenter ask for?".

Two principles drive the details:

* **What you see is what you command.**  Block structure (code fences, block
  quotes, indented code, HTML comments) is read from the *raw* text, the way
  GitHub's Markdown renderer reads it, so that a command is only ever taken
  from text that renders as ordinary prose.  Only the command text itself is
  normalised (NFKC, invisible characters removed), so that what looks like
  ``/omoi approve`` on screen -- fullwidth slash, zero-width space inside the
  name, non-breaking spaces -- is read as ``/omoi approve``.
* **When in doubt, ignore.**  Where our reading of Markdown is simpler than
  GitHub's (lazy quote continuation, unclosed HTML comments), we err towards
  *not* finding a command: a missed command costs the user a retry, a phantom
  one could approve a spec nobody approved.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable, NamedTuple

from app.planning.schemas import STAGES
from app.text.rendering import Reason, reason

__all__ = [
    "MAX_COMMANDS",
    "MAX_TEXT_CHARS",
    "STAGES",
    "VERBS",
    "Command",
    "InvalidCommand",
    "parse_commands",
]

MAX_COMMANDS = 10  # per comment; more than this is a paste accident or abuse
MAX_TEXT_CHARS = 10_000  # per command (its raw text and any free-text argument)
# GitHub caps comment bodies at 65,536 characters; anything far bigger did not
# come from GitHub, and we refuse to spend time on it.
_MAX_BODY_CHARS = 200_000

# (verb, usage), in the order the help reply lists them; what each does is in templates/replies/help.md.j2.
VERBS: tuple[tuple[str, str], ...] = (
    ("help", "/omoi help"),
    ("status", "/omoi status"),
    ("plan", "/omoi plan [--quick] [--ask]"),
    ("approve", "/omoi approve [requirements|design|tasks] [rN] | D<n>"),
    ("decline", "/omoi decline [D<n>] [reason]"),
    ("revise", "/omoi revise [requirements|design|tasks] <what to change>"),
    ("reject", "/omoi reject [reason]"),
    ("implement", "/omoi implement"),
    ("retry", "/omoi retry [task-id]"),
    ("cancel", "/omoi cancel"),
    ("pause", "/omoi pause"),
    ("resume", "/omoi resume"),
    ("stop", "/omoi stop <task-id>"),
    ("tell", "/omoi tell <task-id> <message>"),
    ("budget", "/omoi budget [+N|N]"),
    ("address-review", "/omoi address-review"),
    ("ask", "/omoi ask <question>"),
)

_STAGE_ALIASES = {
    "requirements": "requirements",
    "requirement": "requirements",
    "reqs": "requirements",
    "req": "requirements",
    "design": "design",
    "tasks": "tasks",
    "task": "tasks",
}
_VERB_ALIASES = {"fix": "address-review"}
_KNOWN_VERBS = frozenset(v for v, _ in VERBS)
_NO_ARG_VERBS = frozenset({"help", "status", "implement", "cancel", "pause", "resume"})
# `/omoi plan --quick`: requirements, design and tasks in one comment, one approval; `--ask`: another
# round of clarifying questions is welcome.
_PLAN_FLAGS = {"--quick": "quick", "—quick": "quick", "--ask": "ask", "—ask": "ask"}
# Free text may continue on the following lines (see _continuation).
_TEXT_VERBS = {"revise": True, "ask": True, "reject": False, "address-review": False, "tell": True}  # verb -> text required?

_REVISION = re.compile(r"(?:r|rev)([0-9]{1,6})", re.IGNORECASE)
_DISCOVERY = re.compile(r"d([0-9]{1,9})", re.IGNORECASE)  # a proposed spec revision found by an agent: D2
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Whole dollars up to six digits, at most two decimals.  A regex first, because
# Decimal() alone would happily accept "NaN", "1e9" and "Infinity".
_AMOUNT = re.compile(r"(\+)?\$?([0-9]{1,6}(?:\.[0-9]{1,2})?)")


@dataclass(frozen=True)
class Command:
    """A well-formed command.  ``raw`` is the normalised source text (safe to
    quote back: no bidi controls), ``line`` is 1-based within the comment."""

    verb: str
    args: dict[str, Any] = field(hash=False)  # excluded from hash: dicts are unhashable
    raw: str
    line: int


@dataclass(frozen=True)
class InvalidCommand:
    """Addressed to the bot but unusable: unknown verb or bad arguments.
    ``error`` says why, for the reply (templates/reasons/command/)."""

    verb: str
    error: Reason
    raw: str
    line: int


# --- normalisation ---------------------------------------------------------

# Zero-width, bidi-control and soft-hyphen characters: invisible on screen, so
# they must not change the meaning of what the commenter sees.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _normalise(text: str) -> str:
    # NFKC folds fullwidth forms (／ｏｍｏｉ) and turns non-breaking and other
    # exotic spaces into U+0020.
    return unicodedata.normalize("NFKC", _INVISIBLE.sub("", text))


# --- block structure (raw text, CommonMark-ish) ------------------------------


class _Line(NamedTuple):
    number: int  # 1-based
    text: str | None  # normalised visible text; None when hidden (code, quote, comment)
    can_start: bool  # may a command begin here (line start, <= 3 spaces indent)?


def _indent(raw: str) -> tuple[int, str]:
    """Leading indentation in columns (tabs to multiples of 4) and the rest."""
    cols = 0
    for i, ch in enumerate(raw):
        if ch == " ":
            cols += 1
        elif ch == "\t":
            cols += 4 - cols % 4
        else:
            return cols, raw[i:]
    return cols, ""


_FENCE = re.compile(r"(`{3,}|~{3,})(.*)")


def _fence_open(rest: str) -> tuple[str, int] | None:
    m = _FENCE.match(rest)
    if not m:
        return None
    run, info = m.groups()
    if run[0] == "`" and "`" in info:  # ```foo``` is inline code, not a fence
        return None
    return run[0], len(run)


def _fence_closes(rest: str, char: str, length: int) -> bool:
    run = len(rest) - len(rest.lstrip(char))
    return run >= length and rest[run:].strip(" \t") == ""


def _strip_comments(raw: str, in_comment: bool) -> tuple[str, bool]:
    """Remove <!-- ... --> spans; report whether a comment is still open."""
    out, pos = [], 0
    while True:
        if in_comment:
            end = raw.find("-->", pos)
            if end < 0:
                return "".join(out), True
            pos, in_comment = end + 3, False
        else:
            start = raw.find("<!--", pos)
            if start < 0:
                out.append(raw[pos:])
                return "".join(out), False
            out.append(raw[pos:start])
            pos, in_comment = start + 4, True


def _lines(body: str) -> list[_Line]:
    """Classify each line as visible prose or hidden."""
    lines: list[_Line] = []
    fence: tuple[str, int] | None = None
    in_comment = False
    in_quote = False  # a quote's paragraph lazily swallows following lines
    in_para = False  # an indented line right after prose is prose, not code
    for number, raw in enumerate(re.split(r"\r\n|\r|\n", body), start=1):
        indent, rest = _indent(raw)
        hidden = _Line(number, None, False)
        if fence:
            if indent <= 3 and _fence_closes(rest, *fence):
                fence = None
            lines.append(hidden)
            continue
        if in_comment:
            # A line that begins inside a comment is hidden as a whole.
            _, in_comment = _strip_comments(raw, True)
            in_para = False
            lines.append(hidden)
            continue
        if not rest.strip(" \t"):
            in_quote = in_para = False
            lines.append(_Line(number, "", False))
            continue
        if indent >= 4 and not in_para and not in_quote:
            lines.append(hidden)  # indented code block
            continue
        if indent <= 3:
            opened = _fence_open(rest)
            if opened:
                fence, in_quote, in_para = opened, False, False
                lines.append(hidden)
                continue
            if rest.startswith(">"):
                in_quote = True
                lines.append(hidden)
                continue
        visible, in_comment = _strip_comments(raw, False)
        if in_quote or rest.startswith("<!--"):
            # Lazy quote continuation, or a line that opens with a comment:
            # either way the line does not visibly start with a command.
            in_para = False
            lines.append(hidden)
            continue
        in_para = not in_comment
        lines.append(_Line(number, _normalise(visible), indent <= 3))
    return lines


# --- commands ---------------------------------------------------------------


def _prefix(bot_names: Iterable[str] | str) -> re.Pattern[str] | None:
    if isinstance(bot_names, str):
        bot_names = (bot_names,)
    names = set()
    for name in bot_names or ():
        if isinstance(name, str):
            name = _normalise(name).strip().lstrip("/@")
            if name:
                names.add(re.escape(name))
    if not names:
        return None
    alt = "|".join(sorted(names, key=len, reverse=True))
    # `/name` or `@name` / `@name[bot]`, then whitespace or end of line, so
    # `/omoiapprove` and `@omoi,` are not commands.
    return re.compile(rf"\s*(?:/(?:{alt})|@(?:{alt})(?:\[bot\])?)(?=\s|$)", re.IGNORECASE)


def _continuation(lines: list[_Line], start: int, prefix: re.Pattern[str]) -> list[str]:
    """Visible prose lines following a free-text command, up to a blank line,
    hidden block or another command."""
    out, size = [], 0
    for line in lines[start:]:
        if not line.text or not line.text.strip():
            break
        if line.can_start and prefix.match(line.text):
            break
        out.append(line.text.strip())
        size += len(out[-1]) + 1
        if size > MAX_TEXT_CHARS:
            break
    return out


def _parse_args(verb: str, args: str) -> dict[str, Any] | Reason:
    """Typed arguments for ``verb``, or why they are wrong."""
    tokens = args.split()
    if verb in _NO_ARG_VERBS:
        return reason("command/no_arguments", verb=verb) if tokens else {}
    if verb in ("stop", "tell"):  # a task id first; `tell` then needs a message
        if not tokens or not _TASK_ID.fullmatch(tokens[0]):
            return reason("command/needs_task", verb=verb, token=repr(tokens[0][:40]) if tokens else None)
        text = args.strip()[len(tokens[0]):].strip()[:MAX_TEXT_CHARS]
        if verb == "stop":
            return reason("command/needs_task", verb=verb, token=None) if len(tokens) > 1 else {"task": tokens[0]}
        return {"task": tokens[0], "text": text} if text else reason("command/needs_task", verb=verb, token=None)
    if verb in _TEXT_VERBS:
        text = args.strip()[:MAX_TEXT_CHARS]
        if not text and _TEXT_VERBS[verb]:
            return reason("command/needs_question") if verb == "ask" else reason("command/needs_text", verb=verb)
        return {"text": text} if text or verb != "address-review" else {}  # `/omoi fix`: no text
    if verb == "plan":
        flags = {_PLAN_FLAGS.get(t.lower()) for t in tokens}
        if None in flags:
            return reason("command/plan_flags")
        return {flag: True for flag in sorted(flags)}  # plain `/omoi plan`: {}
    if verb == "approve":
        stage = revision = None
        if len(tokens) == 1 and _DISCOVERY.fullmatch(tokens[0]):
            return {"stage": None, "revision": None, "discovery": int(tokens[0][1:])}
        if len(tokens) > 2:
            return reason("command/approve_too_many")
        for tok in tokens:
            low = tok.lower()
            m = _REVISION.fullmatch(low)
            if low in _STAGE_ALIASES and stage is None:
                stage = _STAGE_ALIASES[low]
            elif m and revision is None:
                revision = int(m.group(1))
                if revision < 1:
                    return reason("command/revision_from_one")
            else:
                return reason("command/approve_unexpected", token=repr(tok[:40]))
        return {"stage": stage, "revision": revision}
    if verb == "decline":  # without an id: the oldest open proposal, like `/omoi approve`
        named = bool(tokens) and _DISCOVERY.fullmatch(tokens[0]) is not None
        text = args.strip()[len(tokens[0]) if named else 0:].strip()[:MAX_TEXT_CHARS]
        return {"discovery": int(tokens[0][1:]) if named else None, "text": text}
    if verb == "retry":
        if len(tokens) > 1:
            return reason("command/retry_too_many")
        if tokens and not _TASK_ID.fullmatch(tokens[0]):
            return reason("command/not_a_task_id", token=repr(tokens[0][:40]))
        return {"task": tokens[0] if tokens else None}
    if verb == "budget":
        if not tokens:
            return {"mode": "show", "amount": None}
        m = _AMOUNT.fullmatch(tokens[0])
        if len(tokens) > 1 or not m or Decimal(m.group(2)) <= 0:
            return reason("command/budget_amount")
        return {"mode": "add" if m.group(1) else "set", "amount": Decimal(m.group(2))}
    raise AssertionError(f"verb {verb!r} has no argument parser")  # pragma: no cover


def parse_commands(body: str | None, bot_names: Iterable[str] = ("omoi",)) -> list[Command | InvalidCommand]:
    """All commands in ``body``, in order of appearance (at most MAX_COMMANDS).

    Never raises: None, bytes, huge or garbled input yield what can be read,
    possibly nothing.
    """
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return []
    prefix = _prefix(bot_names)
    if prefix is None:
        return []
    lines = _lines(body[:_MAX_BODY_CHARS])
    results: list[Command | InvalidCommand] = []
    for i, line in enumerate(lines):
        if len(results) >= MAX_COMMANDS:
            break
        m = line.can_start and line.text and prefix.match(line.text)
        if not m:
            continue
        raw = line.text.strip()[:MAX_TEXT_CHARS]
        verb_and_args = line.text[m.end() :].split(None, 1)
        if not verb_and_args:  # a bare `/omoi` asks for help
            results.append(Command("help", {}, raw, line.number))
            continue
        word = verb_and_args[0].lower()[:40]
        args = verb_and_args[1] if len(verb_and_args) > 1 else ""
        verb = _VERB_ALIASES.get(word, word)
        if verb not in _KNOWN_VERBS:
            results.append(InvalidCommand(word, reason("command/unknown_verb", verb=repr(word)), raw, line.number))
            continue
        if verb in _TEXT_VERBS:
            more = _continuation(lines, i + 1, prefix)
            if more:
                args = "\n".join([args.strip(), *more]).strip()
                raw = "\n".join([raw, *more])[:MAX_TEXT_CHARS]
        parsed = _parse_args(verb, args)
        if isinstance(parsed, Reason):
            results.append(InvalidCommand(verb, parsed, raw, line.number))
        else:
            results.append(Command(verb, parsed, raw, line.number))
    return results


def split_stage(text: str) -> tuple[str | None, str]:
    """`/omoi revise requirements <text>`: the stage a free text starts with (any alias, an optional
    colon after it) and the rest; (None, text) when it names none."""
    first, _, rest = (text or "").strip().partition(" ")
    stage = _STAGE_ALIASES.get(first.rstrip(":").lower())
    return (stage, rest.strip()) if stage else (None, text)
