"""The floor plan holds: the tree is the architecture (issue 14).

Static checks over the source (ast, no imports of our own code except in a child process):
no import cycles between modules or between packages, no project import hidden inside a function
without a comment saying why, the web process loads no domain code, modules stay small and say
what they are, and jobs are enqueued through one module. The tests keep the same plan: no test
module imports another test module or a conftest (shared helpers are tests/support, fixtures
conftest.py), and test modules, conftests and tests/support stay small and say what they are.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("app", "tasks") for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts)
MAX_LINES = 420  # "no module over ~400 lines"
# The tests' own modules: test modules, conftest.py files and tests/support (the stand-ins in tests/fakes are
# checked with the sources).
TESTS = sorted(p for p in (ROOT / "tests").rglob("*.py") if not {"fakes", "node_modules"} & set(p.parts))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {module_name(p): p for p in SOURCES}


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name lives in (a module, or the package it names)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path, *, top_level: bool) -> list[tuple[str, int]]:
    """(module, line) of project imports made at import time (top_level) or inside functions."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, int]] = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)) and inside != top_level:
                names = []
                if isinstance(child, ast.Import):
                    names = [a.name for a in child.names]
                elif child.module and child.level == 0:
                    names = [f"{child.module}.{a.name}" for a in child.names]
                for n in names:
                    mod = _resolve(n)
                    if mod:
                        found.append((mod, child.lineno))
            visit(child, inside)

    visit(tree, False)
    return found


def _graph(key=lambda m: m) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = {key(m) for m, _ in imports(path, top_level=True)}
        # importing a.b.c runs a/__init__ and a/b/__init__ first
        graph.setdefault(key(name), set()).update(d for d in deps if d != key(name))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "app" else parts[0]


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycles_between_packages():
    assert _cycles(_graph(package_of)) == []


def test_app_never_imports_the_celery_tasks():
    offenders = [(name, m) for name, path in MODULES.items() if name.startswith("app")
                 for m, _ in imports(path, top_level=True) + imports(path, top_level=False) if m.startswith("tasks")]
    assert offenders == []


def test_project_imports_inside_functions_say_why():
    silent = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for _mod, line in imports(path, top_level=False):
            here, before = lines[line - 1], lines[line - 2] if line > 1 else ""
            if "#" not in here and not before.strip().startswith("#"):
                silent.append(f"{path.relative_to(ROOT)}:{line}")
    assert silent == []


def test_the_web_process_loads_no_domain_code():
    code = ("import json, sys, app.web.server, app.cli; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('app', 'anthropic', 'claude_agent_sdk', 'daytona')))))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout)
    forbidden = ("app.agent", "app.sandbox", "app.planning", "app.execution", "app.llm", "app.commands",
                 "app.events", "anthropic", "claude_agent_sdk", "daytona")
    assert [m for m in loaded if m.startswith(forbidden)] == []


def test_modules_are_small_and_say_what_they_are():
    fakes = sorted((ROOT / "tests" / "fakes").rglob("*.py"))
    too_long = {str(p.relative_to(ROOT)): n for p in SOURCES + fakes + TESTS
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}
    undocumented = [str(p.relative_to(ROOT)) for p in SOURCES + TESTS
                    if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert undocumented == []


def _test_module_or_conftest(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "tests" and any(part.startswith("test_") or part == "conftest" for part in parts[1:])


def test_no_test_module_imports_another_test_module_or_a_conftest():
    """What tests share lives in tests/support (helpers) and conftest.py (fixtures, which pytest provides)."""
    offenders = []
    for path in TESTS + sorted((ROOT / "tests" / "fakes").rglob("*.py")):
        package = module_name(path).split(".")[:-1] if path.name != "__init__.py" else module_name(path).split(".")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]) if node.level \
                    else node.module or ""
                names = [base.strip(".")] + [f"{base.strip('.')}.{a.name}" for a in node.names]
            else:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if _test_module_or_conftest(n)]
    assert offenders == []


def test_jobs_are_enqueued_through_one_module():
    senders = sorted(str(p.relative_to(ROOT)) for p in SOURCES
                     if "send_task(" in p.read_text() or ".apply_async(" in p.read_text() or ".delay(" in p.read_text())
    assert senders == ["app/jobs.py"]
