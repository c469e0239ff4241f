"""Sample plans, each defined once.

FLAG_*: the model's drafts for "add a --flag" (as the Anthropic stand-in returns them), for tests
that only need *a* valid plan. HAPPY: the approved plan of the execution tests (greet users: hello.py,
bye.py and a main.py that uses both), its requirements and design, its tasks one by one and the code
that passes their verify commands. The CSV-export plan (good_requirements, good_design,
good_tasks_draft, draft_task) is the planning unit tests' valid plan, which they then break.
"""
from __future__ import annotations

from app.planning.schemas import Design, RequirementsDraft, TasksDraft, assign_ids

# a one-file repository and the requirements/design a model would write for "add a --flag"
FLAG_FILES = {"app.py": "def main():\n    pass\n"}
FLAG_REQUIREMENTS = {
    "summary": "A flag.",
    "stories": [{"title": "Flag", "as_a": "user", "i_want": "a flag", "so_that": "I choose", "priority": "must",
                 "criteria": [{"pattern": "event", "text": "WHEN the user passes --flag, THE SYSTEM SHALL print on",
                               "verification": "pytest tests/test_flag.py"}]}],
    "open_questions": [], "out_of_scope": [],
}
FLAG_DESIGN = {
    "overview": "Parse the flag in main.",
    "components": [{"name": "cli", "responsibility": "parse", "files": ["app.py"], "satisfies": ["R1"]}],
    "decisions": [{"title": "Where", "choice": "app.py", "alternatives": ["a module"], "rationale": "small"}],
    "file_plan": [{"path": "app.py", "action": "modify", "purpose": "flag"},
                  {"path": "tests/test_flag.py", "action": "create", "purpose": "test"}],
    "risks": [], "testing_strategy": "pytest",
}


# --------------------------------------------------------------------------------------------
# the execution tests' plan: greet users


def task(key, covers, path, verify, depends_on=()) -> dict:
    """A task of a tasks draft that creates `path`, checked by the `verify` commands."""
    return {"key": key, "title": f"Write {path}", "description": f"Create {path}.", "covers": covers,
            "depends_on": list(depends_on), "files": [{"path": path, "action": "create"}], "verify": verify,
            "size": "S", "kind": "implement"}


HELLO_VERIFY = "python3 -c 'import hello; assert hello.greet() == \"Hello\"'"
HELLO = task("hello", ["R1.1"], "hello.py", [HELLO_VERIFY])
BYE_VERIFY = "python3 -c 'import bye; assert bye.bye() == \"Bye\"'"
BYE = task("bye", ["R1.2"], "bye.py", [BYE_VERIFY])  # independent of HELLO
BYE_AFTER_HELLO = task("bye", ["R1.2"], "bye.py", [BYE_VERIFY], depends_on=["hello"])
MAIN = task("main", ["R1.3"], "main.py", ["python3 main.py | grep -q 'Hello Bye'"], depends_on=["hello", "bye"])
HAPPY = [HELLO, BYE, MAIN]
CODE = {
    "hello.py": "def greet():\n    return 'Hello'\n",
    "bye.py": "def bye():\n    return 'Bye'\n",
    "main.py": "from hello import greet\nfrom bye import bye\nprint(greet(), bye())\n",
}
HAPPY_REQUIREMENTS = assign_ids(RequirementsDraft.model_validate({
    "summary": "Users want friendly greetings.",
    "stories": [{"title": "Greeting", "as_a": "user", "i_want": "greetings", "so_that": "I feel welcome",
                 "priority": "must", "criteria": [
                     {"pattern": "event", "text": "WHEN asked, THE SYSTEM SHALL say Hello", "verification": "hello check"},
                     {"pattern": "event", "text": "WHEN leaving, THE SYSTEM SHALL say Bye", "verification": "bye check"},
                     {"pattern": "event", "text": "WHEN run, THE SYSTEM SHALL greet", "verification": "main check"}]}],
}))
HAPPY_DESIGN = {"overview": "Two small modules and a main that uses them.", "components": [], "decisions": [],
                "file_plan": [], "risks": [], "testing_strategy": "python checks"}


# --------------------------------------------------------------------------------------------
# the planning unit tests' plan: a CSV export


def crit(text, pattern="event", verification="unit test"):
    return dict(pattern=pattern, text=text, verification=verification)


def story(title, criteria, priority="must"):
    return dict(title=title, as_a="maintainer", i_want=title.lower(), so_that="it works", priority=priority, criteria=criteria)


def good_requirements():
    return assign_ids(RequirementsDraft(
        summary="Add a CSV export so maintainers can analyse issues offline.",
        stories=[
            story("Export", [
                crit("WHEN the maintainer runs `export`, THE CLI SHALL write a CSV file"),
                crit("IF the output path is not writable, THEN THE CLI SHALL exit with status 2", "unwanted"),
            ]),
            story("Headers", [crit("THE exporter SHALL write a header row", "ubiquitous")], priority="should"),
            story("Colours", [crit("WHERE colour output is enabled, THE CLI SHALL colour the summary", "optional")], priority="could"),
        ],
        open_questions=["Which delimiter?"],
        out_of_scope=["Excel files"],
    ))


def good_design(**overrides):
    data = dict(
        overview="A small exporter module called from the CLI.",
        components=[
            dict(name="Exporter", responsibility="Write rows as CSV", files=["src/export.py"], satisfies=["R1", "R2"]),
            dict(name="CLI", responsibility="Parse the export command", files=["src/app.py"], satisfies=["R1"]),
        ],
        data_changes=[],
        interface_changes=["new `export` subcommand"],
        decisions=[dict(title="CSV library", choice="stdlib csv", alternatives=["pandas"], rationale="no new dependency")],
        file_plan=[
            dict(path="src/export.py", action="create", purpose="the exporter"),
            dict(path="src/app.py", action="modify", purpose="wire the subcommand"),
        ],
        risks=[dict(risk="large exports", mitigation="stream rows")],
        testing_strategy="pytest unit tests per criterion",
    )
    data.update(overrides)
    return Design(**data)


def draft_task(key, covers, kind="implement", depends_on=(), files=(), size="S", title=None,
               description=None):
    """A task of a tasks draft as the gates read it (files as (path, action) pairs)."""
    return dict(
        key=key, title=title or key, description=description or f"do {key}", covers=list(covers),
        depends_on=list(depends_on), files=[dict(path=p, action=a) for p, a in files], verify=["pytest -q"],
        size=size, kind=kind,
    )


def good_tasks_draft():
    return TasksDraft(tasks=[
        draft_task("export-tests", ["R1.1", "R1.2", "R2.1"], kind="test", files=[("tests/test_export.py", "create")]),
        draft_task("exporter", ["R1.1", "R2.1"], depends_on=["export-tests"], files=[("src/export.py", "create")], size="M"),
        draft_task("cli", ["R1.1", "R1.2"], depends_on=["exporter", "export-tests"], files=[("src/app.py", "modify")]),
    ])


# The greeter planning flow (tests/e2e/test_spec_flow.py, benchmarks/spec_flow.py): the repository
# and the three stage drafts the model writes.
GREETER_FILES = {"README.md": "# greeter\nRun `pytest`.\n", "greeter.py": "def main():\n    pass\n",
                 "tests/test_greeter.py": "def test_nothing():\n    assert True\n"}

GREETER_REQUIREMENTS = {
    "summary": "Users want a friendly greeting.",
    "stories": [{
        "title": "Greeting", "as_a": "user", "i_want": "to be greeted", "so_that": "I feel welcome",
        "priority": "must",
        "criteria": [{"pattern": "event", "text": "WHEN the user runs greeter, THE SYSTEM SHALL print Hello",
                      "verification": "pytest tests/test_hello.py"}],
    }],
    "open_questions": [], "out_of_scope": ["translations"],
}


def greeter_design(extra_note: str = "") -> dict:
    return {
        "overview": "Add a hello function used by main." + extra_note,
        "components": [{"name": "hello", "responsibility": "format the greeting", "files": ["greeter.py"],
                        "satisfies": ["R1"]}],
        "decisions": [{"title": "Where", "choice": "greeter.py", "alternatives": ["a new module"],
                       "rationale": "small change"}],
        "file_plan": [{"path": "greeter.py", "action": "modify", "purpose": "print Hello"},
                      {"path": "tests/test_hello.py", "action": "create", "purpose": "test it"}],
        "risks": [], "testing_strategy": "pytest",
    }


GREETER_TASKS = {"tasks": [
    {"key": "test", "title": "Test the greeting", "description": "Write tests/test_hello.py", "covers": ["R1.1"],
     "files": [{"path": "tests/test_hello.py", "action": "create"}], "verify": ["pytest -q"], "size": "S",
     "kind": "test"},
    {"key": "impl", "title": "Print Hello", "description": "Change main", "covers": ["R1.1"], "depends_on": ["test"],
     "files": [{"path": "greeter.py", "action": "modify"}], "verify": ["pytest -q"], "size": "S",
     "kind": "implement"},
]}


# The quick path (tests/e2e/test_quick_path.py): the greeter's requirements, and a design and tasks
# whose verify commands need nothing but python3, with the code that passes them.
QUICK_DESIGN = {**greeter_design(), "file_plan": [{"path": "hello.py", "action": "create", "purpose": "the greeting"},
                                                  {"path": "main.py", "action": "create", "purpose": "print it"}]}
QUICK_TASKS = {"tasks": [task("hello", ["R1.1"], "hello.py", [HELLO_VERIFY]),
                         task("main", ["R1.1"], "main.py", ["python3 main.py | grep -q Hello"], depends_on=["hello"])]}
QUICK_CODE = {"T1": ("hello.py", CODE["hello.py"]), "T2": ("main.py", "from hello import greet\nprint(greet())\n")}


# A scope change found by an agent (tests/e2e/test_discovery_spec.py): the greeting plan's requirements
# as the model writes them (no ids), the same plus French, a design and tasks that cover it.
def _draft_of(requirements) -> dict:
    data = requirements.model_dump(mode="json", exclude={"stories": {"__all__": {"id": True, "criteria": {
        "__all__": {"id"}}}}})
    return data


HAPPY_REQUIREMENTS_DRAFT = _draft_of(HAPPY_REQUIREMENTS)
FRENCH_REQUIREMENTS = {**HAPPY_REQUIREMENTS_DRAFT, "stories": HAPPY_REQUIREMENTS_DRAFT["stories"] + [{
    "title": "French", "as_a": "French user", "i_want": "Bonjour", "so_that": "I feel at home", "priority": "must",
    "criteria": [{"pattern": "event", "text": "WHEN asked in French, THE SYSTEM SHALL say Bonjour",
                  "verification": "fr check"}]}]}
FRENCH_DESIGN = {
    "overview": "One module per greeting and a main that uses them.",
    "components": [{"name": "greetings", "responsibility": "say hello, bye and bonjour",
                    "files": ["hello.py", "bye.py", "fr.py"], "satisfies": ["R1", "R2"]},
                   {"name": "main", "responsibility": "greet", "files": ["main.py"], "satisfies": ["R1"]}],
    "decisions": [{"title": "One module per greeting", "choice": "hello.py, bye.py, fr.py",
                   "alternatives": ["one module"], "rationale": "small files"}],
    "file_plan": [{"path": p, "action": "create", "purpose": "a greeting"} for p in ("hello.py", "bye.py", "main.py",
                                                                                    "fr.py")],
    "risks": [], "testing_strategy": "python checks",
}
FRENCH_TASKS = {"tasks": HAPPY + [task("fr", ["R2.1"], "fr.py", ["python3 -c 'import fr'"])]}
