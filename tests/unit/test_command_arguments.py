"""app.commands.grammar: each verb's arguments (pure, no I/O): approve's stage and revision,
budget amounts, free text and its continuation, retry's task ids, verbs without arguments,
aliases and unknown verbs; results are frozen; odd inputs never raise."""

import re
from decimal import Decimal

import pytest

from app.commands.grammar import (
    MAX_COMMANDS,
    MAX_TEXT_CHARS,
    VERBS,
    Command,
    InvalidCommand,
    parse_commands,
)
from app.text.rendering import reason
from tests.support.grammar import one


# --- approve ----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, stage, revision",
    [
        ("", None, None),
        ("design", "design", None),
        ("requirements", "requirements", None),
        ("reqs", "requirements", None),
        ("req", "requirements", None),
        ("tasks", "tasks", None),
        ("r2", None, 2),
        ("R2", None, 2),
        ("rev3", None, 3),
        ("design r2", "design", 2),
        ("r2 design", "design", 2),
        ("TASKS Rev12", "tasks", 12),
    ],
)
def test_approve_variants(args, stage, revision):
    cmd = one(f"/omoi approve {args}")
    assert isinstance(cmd, Command)
    assert cmd.args == {"stage": stage, "revision": revision}


@pytest.mark.parametrize("args", ["banana", "design r0", "design tasks", "r1 r2", "design r2 extra", "r-1", "2"])
def test_approve_invalid(args):
    cmd = one(f"/omoi approve {args}")
    assert isinstance(cmd, InvalidCommand)
    assert cmd.verb == "approve"
    assert cmd.error


# --- budget -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, mode, amount",
    [
        ("", "show", None),
        ("+5", "add", Decimal("5")),
        ("+2.50", "add", Decimal("2.50")),
        ("10", "set", Decimal("10")),
        ("$7.5", "set", Decimal("7.5")),
        ("+$3", "add", Decimal("3")),
        ("\uff0b\uff15", "add", Decimal("5")),  # fullwidth ＋５
    ],
)
def test_budget_variants(args, mode, amount):
    cmd = one(f"/omoi budget {args}")
    assert isinstance(cmd, Command)
    assert cmd.args == {"mode": mode, "amount": amount}


@pytest.mark.parametrize("args", ["+abc", "-5", "0", "+0.00", "1.234", "5 dollars", "NaN", "1e3", "Infinity", "1234567"])
def test_budget_invalid(args):
    cmd = one(f"/omoi budget {args}")
    assert isinstance(cmd, InvalidCommand)
    assert cmd.verb == "budget"


# --- free text, retry and the rest --------------------------------------------


def test_revise_text_and_continuation():
    body = "/omoi revise use Postgres\ninstead of SQLite\n  and add an index\n\nThanks!"
    cmd = one(body)
    assert cmd.args == {"text": "use Postgres\ninstead of SQLite\nand add an index"}
    assert cmd.raw == "/omoi revise use Postgres\ninstead of SQLite\nand add an index"


def test_revise_continuation_stops_at_next_command_and_hidden_blocks():
    result = parse_commands("/omoi revise a\nb\n/omoi approve\n/omoi ask why\n```\nnot this\n```")
    assert [c.verb for c in result] == ["revise", "approve", "ask"]
    assert result[0].args == {"text": "a\nb"}
    assert result[2].args == {"text": "why"}


def test_revise_text_may_start_on_next_line():
    assert one("/omoi revise\nmake it shorter").args == {"text": "make it shorter"}


def test_free_text_required():
    for body in ("/omoi revise", "/omoi revise   \n\nlater text", "/omoi ask"):
        cmd = one(body)
        assert isinstance(cmd, InvalidCommand), cmd
    assert one("/omoi reject").args == {"text": ""}
    assert one("/omoi reject out of scope").args == {"text": "out of scope"}


def test_free_text_is_capped():
    cmd = one("/omoi ask " + "x" * (3 * MAX_TEXT_CHARS))
    assert len(cmd.args["text"]) == MAX_TEXT_CHARS
    assert len(cmd.raw) <= MAX_TEXT_CHARS


def test_retry():
    assert one("/omoi retry").args == {"task": None}
    assert one("/omoi retry T-3").args == {"task": "T-3"}
    assert isinstance(one("/omoi retry a b"), InvalidCommand)
    assert isinstance(one("/omoi retry #3"), InvalidCommand)


def test_no_argument_verbs():
    for verb in ("help", "status", "plan", "implement", "cancel", "pause", "resume"):
        assert one(f"/omoi {verb}") == Command(verb, {}, f"/omoi {verb}", 1)
        bad = one(f"/omoi {verb} now please")
        assert isinstance(bad, InvalidCommand) and bad.verb == verb


def test_fix_alias():
    assert one("/omoi fix") == Command("address-review", {}, "/omoi fix", 1)
    assert one("/omoi fix handle empty names").args == {"text": "handle empty names"}  # what to change, for the agent


def test_unknown_verb():
    cmd = one("/omoi deploy production")
    assert cmd == InvalidCommand("deploy", reason("command/unknown_verb", verb="'deploy'"), "/omoi deploy production", 1)
    assert str(cmd.error) == "unknown verb 'deploy'"


def test_verbs_table():
    names = [v for v, _ in VERBS]
    assert names[0] == "help" and len(names) == len(set(names))
    for verb, usage in VERBS:  # what each does is worded in templates/replies/help.md.j2
        assert usage.startswith(f"/omoi {verb}")
        # every listed verb parses (usage with its placeholders stripped)
        example = re.sub(r"\s*[\[<].*", "", usage)
        extra = {"revise": " something", "ask": " something", "stop": " T1", "tell": " T1 something"}.get(verb, "")
        assert isinstance(one(example + extra), Command), usage


def test_results_are_frozen_and_hashable():
    cmd = one("/omoi approve design")
    with pytest.raises(AttributeError):
        cmd.verb = "reject"  # type: ignore[misc]
    hash(cmd)
    hash(one("/omoi banana"))


def test_odd_inputs_do_not_raise():
    assert parse_commands(b"/omoi status\n") == [Command("status", {}, "/omoi status", 1)]
    assert str(parse_commands(b"/omoi \xff")[0].error) == "unknown verb '\ufffd'"
    assert parse_commands(b"\x00\xff\xfe") == []
    assert parse_commands(12345) == []  # type: ignore[arg-type]
    assert parse_commands("\x00" * 1000 + "\n/omoi status")[0].verb == "status"
    huge = ("/omoi status " + "y" * 70_000 + "\n") * 20 + "```" * 100_000
    assert len(parse_commands(huge)) <= MAX_COMMANDS
    assert parse_commands("/omoi " + "\u200b" * 100_000) == [Command("help", {}, "/omoi", 1)]
