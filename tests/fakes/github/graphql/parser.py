"""GraphQL syntax: the tokenizer and parser (operations, variables, aliases, arguments, nested
selections, inline fragments ``... on Type { }``; no named fragments or directives) and variable
substitution. An inline fragment is a _GqlField named ``...`` whose ``args["on"]`` is its type."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class GraphQLSyntaxError(Exception):
    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line, self.column = line, column


_GQL_TOKEN = re.compile(r'''
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$():=@\[\]{}|&])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
''', re.X)


@dataclass
class _GqlField:
    alias: str
    name: str
    args: dict[str, Any]  # values: python literals, ("$", var) for variables, or nested dict/list
    selections: list["_GqlField"]
    line: int
    column: int


class _GqlParser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str, int, int]] = []
        pos = 0
        while pos < len(source):
            m = _GQL_TOKEN.match(source, pos)
            line = source.count("\n", 0, pos) + 1
            col = pos - (source.rfind("\n", 0, pos) + 1) + 1
            if m is None:
                raise GraphQLSyntaxError(f"Parse error on \"{source[pos]}\" at [{line}, {col}]", line, col)
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), line, col))
            pos = m.end()
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.tokens) and (value is None or self.tokens[self.i][1] == value)

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int, int]:
        if self.i >= len(self.tokens):
            raise GraphQLSyntaxError("Parse error on end of document (expected more)")
        tok = self.tokens[self.i]
        if (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            raise GraphQLSyntaxError(f"Parse error on \"{tok[1]}\" ({tok[0].upper()}) at [{tok[2]}, {tok[3]}]",
                                     tok[2], tok[3])
        self.i += 1
        return tok

    def document(self) -> list[tuple[str, str | None, dict[str, Any], list[_GqlField]]]:
        ops = []
        while self.peek():
            if self.peek("{"):
                ops.append(("query", None, {}, self.selection_set()))
                continue
            kind = self.take(kind="name")
            if kind[1] == "fragment":
                raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support fragments", kind[2], kind[3])
            if kind[1] not in ("query", "mutation"):
                raise GraphQLSyntaxError(f"Parse error on \"{kind[1]}\" at [{kind[2]}, {kind[3]}]", kind[2], kind[3])
            name = self.take(kind="name")[1] if self.peek() and self.tokens[self.i][0] == "name" else None
            defaults: dict[str, Any] = {}
            if self.peek("("):
                self.take("(")
                while not self.peek(")"):
                    self.take("$")
                    var = self.take(kind="name")[1]
                    self.take(":")
                    self.type_ref()
                    if self.peek("="):
                        self.take("=")
                        defaults[var] = self.value()
                self.take(")")
            self.directives()
            ops.append((kind[1], name, defaults, self.selection_set()))
        if not ops:
            raise GraphQLSyntaxError("Parse error on end of document (expected a query)")
        return ops

    def type_ref(self) -> None:
        if self.peek("["):
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek("!"):
            self.take("!")

    def directives(self) -> None:
        while self.peek("@"):
            tok = self.take("@")
            raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support directives", tok[2], tok[3])

    def selection_set(self) -> list[_GqlField]:
        self.take("{")
        out = []
        while not self.peek("}"):
            if self.peek("..."):
                tok = self.take("...")
                if not self.peek("on"):
                    raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support named fragments", tok[2], tok[3])
                self.take("on")
                on = self.take(kind="name")[1]
                out.append(_GqlField(f"... on {on}", "...", {"on": on}, self.selection_set(), tok[2], tok[3]))
                continue
            _, first, line, col = self.take(kind="name")
            alias, name = first, first
            if self.peek(":"):
                self.take(":")
                name = self.take(kind="name")[1]
            args: dict[str, Any] = {}
            if self.peek("("):
                self.take("(")
                while not self.peek(")"):
                    key = self.take(kind="name")[1]
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            self.directives()
            sub = self.selection_set() if self.peek("{") else []
            out.append(_GqlField(alias, name, args, sub, line, col))
        self.take("}")
        if not out:
            raise GraphQLSyntaxError("Parse error: empty selection set")
        return out

    def value(self) -> Any:
        kind, text, line, col = self.tokens[self.i] if self.i < len(self.tokens) else ("", "", 0, 0)
        if text == "$":
            self.take("$")
            return ("$", self.take(kind="name")[1])
        if text == "[":
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if text == "{":
            self.take("{")
            obj = {}
            while not self.peek("}"):
                key = self.take(kind="name")[1]
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        self.take()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            return json.loads(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)  # enums stay strings
        raise GraphQLSyntaxError(f"Parse error on \"{text}\" at [{line}, {col}]", line, col)


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "$":
        return variables.get(value[1])  # GitHub treats missing variables as null
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value
