"""What "renders as meant" means for Markdown and HTML (tests/unit/test_templates.py).

Markdown is parsed with markdown-it (CommonMark + GFM tables): each "- " line must be its own list item,
each "#" line a heading with a blank line above it, each "|" line a row of a table with the header's
number of cells; no list item may swallow the next line (a lazy continuation), no text may be
underlined into a heading, nothing glued to the text before it. HTML must have balanced tags.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

from markdown_it import MarkdownIt

MD = MarkdownIt("commonmark", {"html": True}).enable("table")
GLUED = [
    (re.compile(r"[^\s|]- (?:`|\*\*)"), "a list item glued to the text before it"),
    (re.compile(r"[^\s#`(\[]#{1,6} [A-Z]"), "a heading glued to the text before it"),
    (re.compile(r"[\w.)]\*\*[A-Z]+\d+\*\*"), "a bold name glued to the text before it"),
]


def _cells(row: str) -> int:
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return len(re.split(r"(?<!\\)\|", row))


def markdown_problems(text: str) -> list[str]:
    tokens = MD.parse(text)
    lines = text.split("\n")
    skip, items, headings, tables = set(), set(), set(), []
    for t in tokens:
        if t.map and t.type in ("fence", "code_block", "html_block"):
            skip |= set(range(*t.map))
        if t.map and t.type == "list_item_open":
            items.add(t.map[0])
        if t.map and t.type == "heading_open":
            headings.add(t.map[0])
        if t.map and t.type == "table_open":
            tables.append(range(*t.map))
    problems = []
    for t in tokens:
        if t.type == "heading_open" and t.markup in ("=", "-"):
            problems.append(f"line {t.map[0]}: text underlined into a heading: {lines[t.map[0]]!r}")
    in_table = {i for r in tables for i in r}
    for i, line in enumerate(lines):
        if i in skip:
            continue
        if re.match(r" {0,6}[-*] \S", line) and i not in items:
            problems.append(f"line {i}: not a list item: {line!r}")
        if re.match(r"#{1,6} ", line) and i not in headings:
            problems.append(f"line {i}: not a heading: {line!r}")
        if i in headings and i and lines[i - 1].strip() and not lines[i - 1].startswith("<!--"):
            problems.append(f"line {i}: a heading right under a line of text: {lines[i - 1]!r}")
        if line.startswith("|") and i not in in_table:
            problems.append(f"line {i}: not a table row: {line!r}")
        for pattern, what in GLUED:
            if pattern.search(line):
                problems.append(f"line {i}: {what}: {line!r}")
    for rows in tables:
        width = _cells(lines[rows[0]])
        for i in rows:
            if i != rows[0] + 1 and _cells(lines[i]) != width:
                problems.append(f"line {i}: {_cells(lines[i])} cells, the header has {width}: {lines[i]!r}")
    depth = 0
    for t in tokens:  # a paragraph in a list item that goes on at the left margin swallowed the next line
        depth += 1 if t.type == "list_item_open" else -1 if t.type == "list_item_close" else 0
        if depth and t.type == "paragraph_open" and t.map:
            for i in range(t.map[0] + 1, t.map[1]):
                if lines[i] and not lines[i].startswith(" "):
                    problems.append(f"line {i}: swallowed by the list item above: {lines[i]!r}")
    return problems


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()


def html_problems(text: str) -> list[str]:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser.problems + [f"<{t}> never closed" for t in parser.stack]


