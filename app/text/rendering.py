"""The Jinja2 renderer of the text omoi writes: `render(name, **context)` over templates/.

Every sentence a person (or the model) reads comes from a template there. Strict undefined, no
autoescape (Markdown, not HTML): text people or models wrote goes through the `md_escape` filter;
the `markers` global writes the hidden `<!-- omoi:... -->` comments (app/text/markers.py). Spec
stages rendered as comments and files are app/planning/documents.py; the web pages have their own
environment (app/web/pages.py).

Reasons (why a run, a task or a check failed) are stored as a code and its parameters, never as
finished English: a `Reason` is put into words only when it is shown, by `explain`, from
templates/reasons/<code>.md.j2 (plain text, one line; the caller escapes it for its context). A
stored value without parameters is text written before reasons had codes and is shown as it is.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, UndefinedError

from app.config import ROOT
from app.text import markers

TEMPLATES = ROOT / "templates"
# GitHub rejects issue-comment bodies over 65,536 characters.
GITHUB_BODY_LIMIT = 65_536
REASON_CODE = re.compile(r"[a-z][a-z0-9_]*(?:/[a-z][a-z0-9_]*)*")


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
    env.globals["markers"] = markers.TEMPLATE_GLOBAL
    env.globals["explain"] = explain
    return env


def render(name: str, **context) -> str:
    return environment().get_template(name).render(**context)


def render_line(name: str, **context) -> str:
    """A template that renders one short piece of text (a label, a title): stripped."""
    return render(name, **context).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def md_escape(text: object) -> str:
    """Neutralise user text placed inside our comments (no mentions, no HTML, no markers)."""
    s = str(text)
    s = s.replace("<", "&lt;").replace(">", "&gt;")
    s = s.replace("@", "@\u200b")  # do not ping people by quoting them
    return s


# --- reasons: a code and its parameters, put into words when shown ------------------------------


@dataclass(frozen=True)
class Reason:
    """Why something failed or was refused: `code` names templates/reasons/<code>.md.j2, `params`
    fill it in (a parameter may itself be a Reason, e.g. a run that failed because a task did)."""

    code: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not REASON_CODE.fullmatch(self.code):
            raise ValueError(f"not a reason code: {self.code!r}")

    def __str__(self) -> str:
        return explain(self)

    def __hash__(self) -> int:  # frozen, so hashable like its holders (e.g. a parsed command)
        return hash((self.code, json.dumps(self.json_params(), sort_keys=True)))

    def json_params(self) -> dict:
        """The parameters as JSON (nested reasons as {"code", "params"}), for a database column."""
        return _json(self.params)

    def to_json(self) -> dict:
        return {"code": self.code, "params": self.json_params()}

    def map_text(self, fn) -> "Reason":
        """The same reason with `fn` applied to every text parameter (redaction, truncation)."""
        return Reason(self.code, _map_text(self.params, fn))


def reason(code: str, **params: Any) -> Reason:
    return Reason(code, params)


def stored(value: Reason | None) -> tuple[str | None, dict | None]:
    """(code, params) for a code column and its JSON params column; (None, None) for no reason."""
    return (value.code, value.json_params()) if value is not None else (None, None)


def loaded(code: str | None, params: dict | None) -> Reason | str | None:
    """The stored pair back: a Reason, or, for a row without params, its text as it was written."""
    if code is None:
        return None
    if params is None or not REASON_CODE.fullmatch(code):
        return code
    return Reason(code, params)


def explain(value: Any, params: dict | None = None) -> str:
    """Words for a reason: a Reason, a stored {"code", "params"} dict, a stored code with its params,
    or text (rows written before reasons had codes, text from elsewhere) shown as it is. A code
    without a template is shown as it is too."""
    if value is None:
        return ""
    if isinstance(value, dict) and "code" in value:
        value, params = value["code"], value.get("params") or {}
    if isinstance(value, str):
        found = loaded(value, params)
        if not isinstance(found, Reason):
            return value
        value = found
    if not isinstance(value, Reason):
        return str(value)
    try:
        return environment().get_template(f"reasons/{value.code}.md.j2").render(**value.params).strip()
    except TemplateNotFound:
        return value.code
    except UndefinedError:  # a row stored with other parameters than its template now names: show its code
        return value.code


def _json(value: Any) -> Any:
    if isinstance(value, Reason):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if isinstance(value, Decimal):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _map_text(value: Any, fn) -> Any:
    if isinstance(value, Reason):
        return value.map_text(fn)
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_text(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_text(v, fn) for v in value]
    return value
