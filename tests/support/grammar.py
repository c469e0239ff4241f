"""Reading what app.commands.grammar.parse_commands makes of a comment, in the grammar tests."""
from __future__ import annotations

from app.commands.grammar import parse_commands


def verbs(body, **kw):
    return [c.verb for c in parse_commands(body, **kw)]


def one(body, **kw):
    result = parse_commands(body, **kw)
    assert len(result) == 1, result
    return result[0]
