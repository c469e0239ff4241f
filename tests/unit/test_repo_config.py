"""`.github/omoi.yml`: schema, defaults and the messages people see for a broken file."""
from app.github.repo_config import RepoConfig, parse


def test_empty_or_missing_settings_are_the_defaults():
    config, error = parse("")
    assert error is None and config == RepoConfig()
    assert config.blocked_paths == [".github/**"] and config.auto_resolve_threads is False


def test_valid_file_overrides_defaults():
    config, error = parse("trigger_label: plan-me\napprovers: [alice]\nbudgets:\n  task_usd: 2.5\n")
    assert error is None
    assert (config.trigger_label, config.approvers, config.budgets.task_usd) == ("plan-me", ["alice"], 2.5)
    assert config.budgets.spec_usd == 50.0


def test_unknown_key_is_named_and_defaults_are_used():
    config, error = parse("trigger_lable: x\n")
    assert config == RepoConfig()
    assert error.code == "config/invalid" and error.params["problems"][0]["key"] == "trigger_lable"
    assert str(error) == ".github/omoi.yml: `trigger_lable` is not a known setting"


def test_bad_value_names_the_nested_key():
    _, error = parse("budgets:\n  task_usd: -1\n")
    assert "`budgets.task_usd`" in str(error) and "greater than 0" in str(error)


def test_invalid_yaml_names_the_line():
    _, error = parse("approvers: [alice\nfoo: : :\n")
    assert str(error).startswith(".github/omoi.yml is not valid YAML (line")


def test_not_a_mapping():
    assert str(parse("- a\n- b\n")[1]) == ".github/omoi.yml must be a mapping of settings"
