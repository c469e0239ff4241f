"""Every sentence a person or the model reads lives in templates/, and every template renders as meant
(issue 14).

- Each file under templates/ renders with realistic sample data (a template without a sample fails here,
  so a new template gets one): no literal "None", no unrendered Jinja. Markdown (`*.md.j2`) is parsed
  with markdown-it (CommonMark + GFM tables): each "- " line is its own list item, each "#" line a
  heading, each "|" line a table row with the header's number of cells, no list item swallows the
  next line, nothing glued to the line before. HTML (templates/web/) parses with balanced tags.
- Reasons are stored as a code and its parameters and put into words when shown; text stored before
  (no parameters) and unknown codes are shown as they are; every code app/ uses has a template.
- The hidden `<!-- omoi:... -->` markers are spelled once (app/text/markers.py).
- app/ holds no English prose outside templates/ (an AST walk, tests/support/prose.py, whose short allow-list says why).
"""
from __future__ import annotations

import ast
import re

import pytest

from app.execution.secret_scan import SECRET_KINDS
from app.text import markers
from app.text.rendering import TEMPLATES, environment, explain, loaded, reason, stored
from app.web.pages import html_environment
from tests.support.markup import MD, html_problems, markdown_problems
from tests.support.prose import ROOT, english_in_app, is_prose, strings
from tests.support.reason_samples import REASONS
from tests.support.template_samples import SAMPLES, run_view


def all_templates() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*") if p.is_file())


def samples_of(name: str) -> list:
    if name.startswith("reasons/"):
        code = name[len("reasons/"):].removesuffix(".md.j2")
        return REASONS.get(code, [])
    return SAMPLES.get(name, [])


def rendered(name: str) -> list[str]:
    out = []
    for sample in samples_of(name):
        if callable(sample):
            out.append(sample())
        elif name.startswith("web/"):
            out.append(html_environment().get_template(name[len("web/"):]).render(**sample))
        else:
            out.append(environment().get_template(name).render(**sample))
    return out


@pytest.mark.parametrize("name", all_templates())
def test_template_renders_as_meant(name):
    texts = rendered(name)
    assert texts, (f"templates/{name} has no sample data: add one to tests/support/template_samples.py "
                   "(a reason's to tests/support/reason_samples.py)")
    for text in texts:
        assert not re.search(r"\bNone\b", text), f"a literal None in templates/{name}:\n{text}"
        assert "{{" not in text and "{%" not in text and "{#" not in text, f"unrendered Jinja in {name}:\n{text}"
        if name.startswith("web/"):
            assert html_problems(text) == [], text
        elif name.endswith(".md.j2"):
            assert markdown_problems(text) == [], text


def test_every_template_has_samples_and_every_sample_a_template():
    names = set(all_templates())
    extra = {f"reasons/{c}.md.j2" for c in REASONS} | set(SAMPLES)
    assert sorted(extra - names) == []


def test_the_pr_body_lists_one_item_per_command():
    view = run_view("running")
    text = rendered_one("execution/pr_body.md.j2", view)
    tokens = MD.parse(text)
    start = next(i for i, t in enumerate(tokens) if t.type == "inline" and t.content == "Commands run")
    end = next(i for i, t in enumerate(tokens) if i > start and t.type == "heading_open")
    section = tokens[start:end]
    commands = [t for t in section if t.type == "inline" and t.content.startswith("`")]
    expected = [e["command"] for task in view["tasks"] for e in task["evidence"]]
    assert [c.content.split("`")[1] for c in commands] == expected
    top_items = [t for t in section if t.type == "list_item_open" and t.level == 1]
    assert len(top_items) == len(expected)
    blocked = [t for t in section if t.type == "inline" and "omoi blocked a request" in t.content]
    assert len(blocked) == 2  # the nested items under the setup command
    names = [t.content for t in section if t.type == "inline" and re.fullmatch(r"\*\*T\d+\*\*", t.content)]
    assert names == ["**T1**", "**T2**"]  # each task's name is its own paragraph
    for line in text.split("\n"):
        if "→ exit" in line:
            assert line.startswith("- `") and line.count("→ exit") == 1, line


def rendered_one(name: str, context: dict) -> str:
    return environment().get_template(name).render(**context)


# --- reasons ----------------------------------------------------------------------------------

def test_a_reason_is_stored_as_code_and_params_and_worded_when_shown():
    why = reason("run/task_failed", task="T2", attempts=3, cause=reason("task/lease_lost"))
    code, params = stored(why)
    assert code == "run/task_failed"
    assert params == {"task": "T2", "attempts": 3, "cause": {"code": "task/lease_lost", "params": {}}}
    assert explain(loaded(code, params)) == explain(why)
    assert explain(code, params) == "task T2 failed after 3 attempts: the lease was lost"
    assert str(why) == explain(why)


def test_text_stored_before_reasons_had_codes_is_shown_as_it_is():
    assert explain("cancelled by @alice", None) == "cancelled by @alice"
    assert explain("run/cancelled", None) == "run/cancelled"  # no params: text, even if it looks like a code
    assert explain("no/such_reason", {}) == "no/such_reason"  # an unknown code
    assert explain(None) == "" and explain("") == ""
    assert explain({"code": "run/cancelled", "params": {"user": "bob"}}) == "cancelled by @bob"


def _reason_codes_in_app() -> set[str]:
    codes = set()
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if name in ("reason", "Reason", "reason_of"):
                    codes.add(first.value)
                elif name in ("error", "warn") and path.name == "gates.py":
                    codes.add(f"gate/{first.value}")
    return codes | {f"secret/{k}" for k in SECRET_KINDS}


def test_every_reason_code_app_uses_has_a_template():
    codes = _reason_codes_in_app()
    assert len(codes) > 60
    missing = sorted(c for c in codes if not (TEMPLATES / "reasons" / f"{c}.md.j2").is_file())
    assert missing == []


def test_reason_templates_are_one_line_of_plain_text():
    """A reason is put into a sentence, a table cell or a list item: one line, whatever its parameters add."""
    for name in all_templates():
        if name.startswith("reasons/") and not name.startswith("reasons/_"):
            for params in REASONS[name[len("reasons/"):-len(".md.j2")]]:
                flat = {k: v.replace("\n", " ") if isinstance(v, str) else v for k, v in params.items()}
                text = environment().get_template(name).render(**flat).strip()
                assert text and ("\n" not in text or name == "reasons/agent/with_stderr.md.j2"), (name, text)


# --- markers ----------------------------------------------------------------------------------

def test_markers_are_found_by_their_prefixes():
    assert markers.RUN(spec=12) == "<!-- omoi:run spec=12 -->"
    assert markers.RUN.prefix(spec=1) not in markers.RUN(spec=12)
    assert markers.RUN.prefix(spec=12) in markers.RUN(spec=12)
    assert markers.SPEC.prefix(stage="design") in markers.SPEC(stage="design", rev=2, hash="a" * 12)
    assert markers.REVIEW.prefix(round="9:1") not in markers.REVIEW_REPLY(thread="T", round="9:1")
    assert markers.REFUSED.prefix() in markers.REFUSED()
    assert markers.SPEC.parse("x " + markers.SPEC(stage="tasks", rev=3, hash="b" * 12)) == {
        "stage": "tasks", "rev": "3", "hash": "b" * 12}
    with pytest.raises(ValueError):
        markers.SPEC.prefix(rev=2)  # not the leading attribute


def test_markers_are_spelled_only_in_the_markers_module():
    spelled = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.name == "markers.py":
            continue
        for text, _ in strings(ast.parse(path.read_text())):
            if "omoi:" in text and "<!--" in text:
                spelled.append(f"{path.relative_to(ROOT)}: {text!r}")
    for path in sorted(TEMPLATES.rglob("*.j2")):
        if "<!--" in path.read_text() and "omoi:" in path.read_text():
            spelled.append(str(path.relative_to(ROOT)))
    assert spelled == []


# --- no English outside templates/ ------------------------------------------------------------

def test_app_holds_no_english_outside_templates():
    assert english_in_app() == []


def test_the_prose_check_finds_prose():
    tree = ast.parse('"""A docstring is fine."""\nx = f"the {label} was reached: ${spent}"\nlog.info("a b c d")\n'
                     'raise ValueError("an operator message here")\ny = "snake_case_name"\n')
    texts = [t for t, _ in strings(tree) if is_prose(t)]
    assert texts == ["the {} was reached: ${}"]

