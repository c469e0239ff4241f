"""Small spec documents shared by tests that only need *a* valid plan (the model's drafts, as the
Anthropic stand-in returns them)."""

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
