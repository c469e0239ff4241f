"""Spec stages as GitHub comments and as repository files.

The typed model is the truth; Markdown is only a view of it.  Two promises
are kept here rather than in the templates:

* **Size.**  GitHub rejects comment bodies over 65,536 characters.  The
  comment is rendered in full first; if it is too long, every list in the
  content section is cut to the largest length that fits (binary search) and
  the comment links the full file instead.  A last-resort hard cut makes the
  guarantee unconditional.
* **Escaping.**  Every string the model or a user wrote passes through one of
  the ``md_*`` filters below (all built on ``app.text.rendering.md_escape``), so it
  cannot @-mention anyone, open HTML, or forge an ``<!-- omoi:`` marker that
  ``find_marked`` would mistake for ours.
"""
from __future__ import annotations

import re
from typing import Sequence

from pydantic import BaseModel

from app.text.rendering import GITHUB_BODY_LIMIT, Reason, content_hash, environment, md_escape, reason, render, render_line
from app.planning.gates import GateResult
from app.planning.task_graph import critical_path, parallel_groups
from app.planning.schemas import DOCUMENT_TYPES, Design, Requirements, Tasks

__all__ = [
    "STATUSES", "COMMENT_BUDGET", "doc_hash",
    "render_stage_comment", "render_spec_file", "diff_summary",
]

_TITLES = {"requirements": "Requirements", "design": "Design", "tasks": "Tasks"}
# A stage comment's status; its words are templates/spec/status.md.j2.
STATUSES = ("waiting", "approved", "revising", "blocked", "stale", "outdated", "superseded", "rejected")
# Headroom under GitHub's limit for anything a caller appends, and because
# GitHub's own counting (UTF-16 units, bytes) is not documented precisely.
COMMENT_BUDGET = GITHUB_BODY_LIMIT - 5_536
MAX_GATE_MESSAGES = 10  # per gate, in the comment; the retry prompt gets all
MAX_CHANGES = 50


# --- filters: every piece of model/user text goes through one of these -------


def md_inline(text: object) -> str:
    """One line: table cells, headings, list items."""
    s = md_text(text)
    s = re.sub(r"\s*[\r\n]+\s*", " ", s)
    return s.replace("|", "\\|")


def md_text(text: object) -> str:
    """A paragraph: newlines kept, but no code fences that would swallow the rest."""
    return md_escape(text).replace("```", "\\`\\`\\`").replace("~~~", "\\~\\~\\~")


def md_code(text: object) -> str:
    """An inline code span (paths, commands); backticks would end the span early."""
    s = md_inline(text).replace("`", "'")
    return f"`{s}`"


_env = environment()
_env.filters.update(md_inline=md_inline, md_text=md_text, md_code=md_code)


# --- public API -------------------------------------------------------------


def doc_hash(doc: BaseModel) -> str:
    """Content hash of a stage document; approvals are bound to it."""
    return content_hash(doc.model_dump_json())


def render_stage_comment(
    stage: str,
    doc: BaseModel,
    *,
    revision: int,
    gates: Sequence[GateResult],
    status: str,
    approved_by: str | None = None,
    changes: Sequence[str] | None = None,
    overflow_url: str | None = None,
    findings: str | None = None,
) -> str:
    """The issue comment for one stage revision, always under GITHUB_BODY_LIMIT; `findings`: what the explore
    agent found (app/planning/explore.py), shown collapsed in the requirements comment."""
    _check(stage, doc)
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {sorted(STATUSES)}")
    # An approver is shown as "@login" but escaped, so re-rendering never pings them.
    status_text = render_line("spec/status.md.j2", status=status, approved_by=approved_by, stage=stage)
    change_lines = list(changes) if changes is not None else None
    ctx = dict(
        _content_ctx(stage, doc, overflow_url),
        revision=revision,
        hash=doc_hash(doc),
        status_text=status_text,
        gates=_gate_rows(gates),
        changes=change_lines[:MAX_CHANGES] if change_lines is not None else None,
        changes_hidden=max(0, len(change_lines or []) - MAX_CHANGES),
        findings=findings or None,
    )
    name = f"spec/{stage}.md.j2"
    body = _render_limited(name, ctx, None)
    if len(body) <= COMMENT_BUDGET:
        return body
    # Largest per-list length that fits; 0 always leaves the short fields only.
    lo, hi = 0, _longest_list(doc)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_render_limited(name, ctx, mid)) <= COMMENT_BUDGET:
            lo = mid
        else:
            hi = mid - 1
    body = _render_limited(name, ctx, lo)
    if len(body) > COMMENT_BUDGET:  # cannot happen within the schema caps; never send an oversized body
        note = "\n\n" + render_line("spec/truncated.md.j2", overflow_link=ctx["overflow_link"]) + "\n"
        body = body[: COMMENT_BUDGET - len(note)] + note
    return body


def render_spec_file(stage: str, doc: BaseModel) -> str:
    """The approved stage as a standalone Markdown file for `.omoi/specs/<issue>/`."""
    _check(stage, doc)
    return _render_limited(f"spec/file_{stage}.md.j2", _content_ctx(stage, doc, None), None, standalone=True)


def diff_summary(old_doc: BaseModel, new_doc: BaseModel) -> list[Reason]:
    """The changes between two revisions of the same stage (their words: templates/reasons/change/)."""
    if type(old_doc) is not type(new_doc):
        raise TypeError(f"cannot diff {type(old_doc).__name__} against {type(new_doc).__name__}")
    if isinstance(new_doc, Requirements):
        return _diff_requirements(old_doc, new_doc)
    if isinstance(new_doc, Design):
        return _diff_design(old_doc, new_doc)
    if isinstance(new_doc, Tasks):
        return _diff_tasks(old_doc, new_doc)
    raise TypeError(f"not a spec document: {type(new_doc).__name__}")


# --- helpers ----------------------------------------------------------------


def _check(stage: str, doc: BaseModel) -> None:
    if stage not in DOCUMENT_TYPES:
        raise ValueError(f"unknown stage {stage!r}")
    if not isinstance(doc, DOCUMENT_TYPES[stage]):
        raise TypeError(f"{stage} stage needs a {DOCUMENT_TYPES[stage].__name__}, got {type(doc).__name__}")


def _content_ctx(stage: str, doc: BaseModel, overflow_url: str | None) -> dict:
    ctx = dict(stage=stage, title=_TITLES[stage], doc=doc, overflow_url=overflow_url)
    ctx["overflow_link"] = render_line("spec/overflow_link.md.j2", stage=stage, overflow_url=overflow_url)
    if stage == "tasks":
        ctx["groups"] = parallel_groups(doc)
        ctx["critical"] = critical_path(doc)
    return ctx


def _render_limited(name: str, ctx: dict, limit: int | None, standalone: bool = False) -> str:
    """Render with every content list cut to `limit` items (None: no cut)."""
    def hidden(seq: Sequence) -> int:
        return max(0, len(seq) - limit) if limit is not None else 0

    truncated = limit is not None  # a limit is only ever set when the full render was too long
    # Headings sit one level below the comment title, or under the file's "# Title".
    h = "##" if standalone else "####"
    return render(name, **ctx, standalone=standalone, h=h, limit=limit, hidden=hidden, truncated=truncated)


def _longest_list(doc: BaseModel) -> int:
    """Length of the longest list anywhere in the doc (criteria nest inside stories)."""
    def walk(v) -> int:
        if isinstance(v, dict):
            return max((walk(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return max([len(v)] + [walk(x) for x in v])
        return 0
    return walk(doc.model_dump())


def _gate_rows(gates: Sequence[GateResult]) -> list[dict]:
    """One row per gate name, in first-seen order: icon plus its failure messages."""
    rows: dict[str, dict] = {}
    for r in gates:
        row = rows.setdefault(r.name, {"name": r.name, "errors": 0, "warnings": 0, "messages": []})
        if not r.passed:
            row["errors" if r.severity == "error" else "warnings"] += 1
            row["messages"].append(r.message)
    for row in rows.values():
        row["icon"] = "❌" if row["errors"] else "⚠️" if row["warnings"] else "✅"
        row["hidden"] = max(0, len(row["messages"]) - MAX_GATE_MESSAGES)
        row["messages"] = row["messages"][:MAX_GATE_MESSAGES]
    return list(rows.values())


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _changed_fields(old: BaseModel, new: BaseModel, fields: Sequence[str]) -> list[str]:
    return [f for f in fields if getattr(old, f) != getattr(new, f)]


def _diff_requirements(old: Requirements, new: Requirements) -> list[Reason]:
    out: list[Reason] = []
    if old.summary != new.summary:
        out.append(reason("change/summary_changed"))
    olds, news = {s.id: s for s in old.stories}, {s.id: s for s in new.stories}
    for sid, s in news.items():
        if sid not in olds:
            out.append(reason("change/story_added", id=sid, title=_short(s.title)))
            out += [reason("change/criterion_added", id=c.id, text=_short(c.text)) for c in s.criteria]
            continue
        o = olds[sid]
        fields = _changed_fields(o, s, ["title", "as_a", "i_want", "so_that", "priority"])
        if fields:
            out.append(reason("change/story_changed", id=sid, fields=fields, old_priority=o.priority,
                              new_priority=s.priority))
        oc, nc = {c.id: c for c in o.criteria}, {c.id: c for c in s.criteria}
        for cid, c in nc.items():
            if cid not in oc:
                out.append(reason("change/criterion_added", id=cid, text=_short(c.text)))
            elif fields := _changed_fields(oc[cid], c, ["pattern", "text", "verification"]):
                out.append(reason("change/criterion_changed", id=cid, fields=fields, text=_short(c.text)))
        out += [reason("change/criterion_removed", id=cid) for cid in oc if cid not in nc]
    out += [reason("change/story_removed", id=sid, title=_short(s.title)) for sid, s in olds.items() if sid not in news]
    for field in ("open_questions", "out_of_scope"):
        ov, nv = getattr(old, field), getattr(new, field)
        out += [reason("change/item_added", field=field, item=_short(x)) for x in nv if x not in ov]
        out += [reason("change/item_removed", field=field, item=_short(x)) for x in ov if x not in nv]
    return out


def _diff_named(kind: str, old: list, new: list, key: str, fields: Sequence[str]) -> list[Reason]:
    out: list[Reason] = []
    om, nm = {getattr(x, key): x for x in old}, {getattr(x, key): x for x in new}
    for k, x in nm.items():
        if k not in om:
            out.append(reason("change/named_added", kind=kind, name=k))
        elif changed := _changed_fields(om[k], x, fields):
            out.append(reason("change/named_changed", kind=kind, name=k, fields=changed))
    out += [reason("change/named_removed", kind=kind, name=k) for k in om if k not in nm]
    return out


def _diff_design(old: Design, new: Design) -> list[Reason]:
    out = [reason("change/field_changed", field=f) for f in _changed_fields(
        old, new, ["overview", "data_changes", "interface_changes", "risks", "testing_strategy"])]
    out += _diff_named("component", old.components, new.components, "name", ["responsibility", "files", "satisfies"])
    out += _diff_named("decision", old.decisions, new.decisions, "title", ["choice", "alternatives", "rationale"])
    out += _diff_named("file", old.file_plan, new.file_plan, "path", ["action", "purpose"])
    return out


def _diff_tasks(old: Tasks, new: Tasks) -> list[Reason]:
    # Tasks are matched by the model's key, not by ID: IDs are positional and
    # inserting one task would otherwise report every later task as changed.
    out: list[Reason] = []
    om, nm = {t.key.lower(): t for t in old.tasks}, {t.key.lower(): t for t in new.tasks}
    old_key = {t.id: t.key.lower() for t in old.tasks}
    new_key = {t.id: t.key.lower() for t in new.tasks}
    for k, t in nm.items():
        if k not in om:
            out.append(reason("change/task_added", id=t.id, title=_short(t.title)))
            continue
        o = om[k]
        fields = _changed_fields(o, t, ["title", "description", "covers", "files", "verify", "size", "kind"])
        # Compare dependencies by key too, so renumbering alone is not a change.
        if {old_key.get(d, d) for d in o.depends_on} != {new_key.get(d, d) for d in t.depends_on}:
            fields.insert(3, "depends_on")
        if o.id != t.id:
            out.append(reason("change/task_renumbered", old=o.id, new=t.id))
        if fields:
            out.append(reason("change/task_changed", id=t.id, fields=fields))
    out += [reason("change/task_removed", id=t.id, title=_short(t.title)) for k, t in om.items() if k not in nm]
    old_files = {f.path for t in old.tasks for f in t.files}
    new_files = {f.path for t in new.tasks for f in t.files}
    out += [reason("change/touches_added", path=p) for p in sorted(new_files - old_files)]
    out += [reason("change/touches_removed", path=p) for p in sorted(old_files - new_files)]
    return out


_COMMANDS = "\n---\n<details><summary>Commands</summary>"


def render_quick_comment(parts: Sequence[tuple[str, str]], *, revision: int, status: str) -> str:
    """The quick path's one comment (issue 17): requirements, design and tasks together, one approval.
    `parts` are (stage, that stage's own comment body); each keeps its gates and changes, not its marker
    or its commands (the quick comment has its own). Too long for one comment: each stage links its file."""
    sections = [(stage, body.split("\n", 1)[1].split(_COMMANDS, 1)[0].strip()) for stage, body in parts]
    body = render("spec/quick.md.j2", revision=revision, status=status, sections=sections)
    return body if len(body) <= COMMENT_BUDGET else render("spec/quick.md.j2", revision=revision, status=status,
                                                           sections=[(st, None) for st, _ in parts])
