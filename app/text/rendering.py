"""The Jinja2 renderer of the Markdown omoi writes to GitHub: `render(name, **context)` over templates/.

Every user-visible text comes from a template there. Strict undefined, no autoescape (Markdown, not
HTML): text people or models wrote goes through the `md_escape` filter; `marker` makes the hidden
`<!-- omoi:... -->` comments that find omoi's own comments again. Spec stages rendered as comments
and files are app/planning/documents.py; the web pages have their own environment (app/web/pages.py).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.config import ROOT

TEMPLATES = ROOT / "templates"
# GitHub rejects issue-comment bodies over 65,536 characters.
GITHUB_BODY_LIMIT = 65_536


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=False,  # Markdown, not HTML; user text is escaped with the md_escape filter
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md_escape"] = md_escape
    env.globals["marker"] = marker
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


def marker(kind: str, **attrs) -> str:
    """A hidden HTML comment that lets omoi find and edit its own comment after a retry."""
    parts = [f"omoi:{kind}"] + [f"{k}={v}" for k, v in attrs.items() if v is not None]
    return "<!-- " + " ".join(parts) + " -->"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def md_escape(text: object) -> str:
    """Neutralise user text placed inside our comments (no mentions, no HTML, no markers)."""
    s = str(text)
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("@", "@\u200b")  # do not ping people by quoting them
    return s
