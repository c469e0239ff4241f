"""The issue 17 planning arguments: `/omoi plan --quick|--ask`, `/omoi approve D<n>`, `/omoi decline [D<n>] [reason]`."""
from __future__ import annotations

from app.commands.grammar import Command, InvalidCommand, parse_commands
from app.planning.schemas import RequirementsDraft


def one(body: str):
    found = parse_commands(body)
    assert len(found) == 1, found
    return found[0]


def test_plan_flags():
    assert one("/omoi plan").args == {}
    assert one("/omoi plan --quick").args == {"quick": True}
    assert one("/omoi plan --ask --QUICK").args == {"ask": True, "quick": True}
    bad = one("/omoi plan now")
    assert isinstance(bad, InvalidCommand) and bad.error.code == "command/plan_flags"


def test_approve_and_decline_a_proposal():
    assert one("/omoi approve D2").args == {"stage": None, "revision": None, "discovery": 2}
    assert one("/omoi approve design r2").args == {"stage": "design", "revision": 2}
    assert isinstance(one("/omoi approve D2 r1"), InvalidCommand)
    assert one("/omoi decline d7 not in this release").args == {"discovery": 7, "text": "not in this release"}
    assert one("/omoi decline").args == {"discovery": None, "text": ""}
    assert one("/omoi decline later maybe") == Command("decline", {"discovery": None, "text": "later maybe"},
                                                       "/omoi decline later maybe", 1)


def test_requirements_draft_has_stories_or_questions():
    assert RequirementsDraft(summary="s", questions=["Which one?"]).stories == []
    try:
        RequirementsDraft(summary="s")
    except ValueError as exc:
        assert "at least one story" in str(exc)
    else:
        raise AssertionError("a draft with neither stories nor questions is invalid")
