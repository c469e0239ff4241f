"""Finding English prose in app/ outside templates/ (tests/unit/test_templates.py): an AST walk over the
string constants and f-strings that are not docstrings, not exception messages (`raise`), not
arguments of log, metric or schema calls, and read as prose; with a short allow-list, each entry
saying why.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Prose: three or more words in a row (a `{}` placeholder counts as a word, but two must be real words),
# in a string that is not SQL, GraphQL or a command synopsis.
WORD = re.compile(r"^[(\"'`\[]*(?:[A-Za-z]+(?:'[a-z]+)?|\$?\{\})[,.:;!?)\"'`\]]*$")
CODE_LIKE = re.compile(r"^\s*(?:query|mutation|SELECT|INSERT|UPDATE|DELETE|WITH)\b|^/omoi |^HTTP/1|^[A-Z][\w-]+: ")
# Single strings that are not for people, and why.
NOT_FOR_PEOPLE = {
    ("app/execution/gitwork.py", "cannot lock ref"): "git's own words, looked for in its output",
    ("app/intake/processing.py", "integrity check failed"): "the delivery row's error, an operators' record",
    ("app/llm/structured.py", "invalid output: {}"): "a model call's error record, beside the API's own errors",
    # Why the jail cannot start (SandboxUnavailable): install hints for whoever runs omoi's workers.
    ("app/sandbox/jail.py", "{} not installed (Debian: apt-get install bubblewrap util-linux socat)"): "operator",
    ("app/sandbox/jail.py", "bubblewrap cannot create the sandbox's namespaces here: "): "operator",
    ("app/sandbox/jail.py", " (user namespaces must be allowed; in Docker run with --security-opt seccomp=unconfined "
                            "--security-opt apparmor=unconfined, or --privileged)"): "operator",
    ("app/sandbox/jail.py", "bubblewrap failed to start: {}"): "operator",
}
# Calls whose string arguments are for operators (logs, metrics, the command line), for the HTTP
# clients that call omoi's endpoints (JSON error bodies), or schema descriptions that belong to their
# field (pydantic puts them into the JSON schema the model is given, beside the field they describe).
NOT_PROSE_CALLS = {
    "debug", "info", "warning", "error", "exception", "critical", "bind",   # structlog
    "Counter", "Gauge", "Histogram", "GaugeMetricFamily", "CounterMetricFamily", "HistogramMetricFamily",  # metrics
    "add_argument", "add_parser", "ArgumentParser", "add_subparsers",      # the CLI's --help
    "json_response", "json_answer", "_error", "_refuse",                    # HTTP error bodies to API clients
    "Field",                                                               # schema descriptions
}
# Modules whose strings are for operators only, and why.
OPERATOR_MODULES = {
    "app/cli.py": "the command line: its messages go to the operator's terminal",
}


def strings(tree: ast.AST):
    """(text, node) of every string constant or f-string that is not a docstring, not in a raise and
    not an argument of a NOT_PROSE_CALLS call."""
    parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
    docs = {n.body[0].value for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if node in docs or isinstance(parents.get(node), ast.JoinedStr):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        else:
            continue
        p, skip = node, False
        while p in parents and not skip:
            p = parents[p]
            if isinstance(p, ast.Raise):
                skip = True  # exception messages: operators' logs (what reaches people is a Reason)
            elif isinstance(p, ast.Call):
                name = p.func.attr if isinstance(p.func, ast.Attribute) else getattr(p.func, "id", "")
                skip = name in NOT_PROSE_CALLS
            elif isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                break
        if not skip:
            yield text, node


def is_prose(text: str) -> bool:
    if CODE_LIKE.search(text):
        return False
    run = real = 0
    for token in text.split():
        if WORD.match(token):
            run, real = run + 1, real + ("{}" not in token)
            if run >= 3 and real >= 2:
                return True
        else:
            run = real = 0
    return False


def english_in_app() -> list[str]:
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel in OPERATOR_MODULES or "/migrations/" in rel:
            continue
        for text, node in strings(ast.parse(path.read_text())):
            if is_prose(text) and (rel, text) not in NOT_FOR_PEOPLE:
                found.append(f"{rel}:{node.lineno}: {text[:100]!r}")
    return found


