"""Settings precedence: environment (OMOI_* and the well-known plain names) > OMOI_CONFIG YAML > base.yaml."""
import pytest

from app.config import Settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "OMOI_ANTHROPIC_BASE_URL", "OMOI_CONFIG",
                 "OMOI_TRIGGER_LABEL"):
        monkeypatch.delenv(name, raising=False)


def test_base_yaml_defaults():
    s = Settings()
    assert s.trigger_label == "omoi" and s.github_api_url == "https://api.github.com"
    assert s.anthropic_base_url == "" and s.database_url.startswith("sqlite:///")


def test_plain_anthropic_variables_override_base_yaml(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    s = Settings()
    assert s.anthropic_base_url == "http://127.0.0.1:9/" and s.anthropic_api_key.get_secret_value() == "sk-test"


def test_omoi_prefixed_variable_wins_and_config_file_layers(monkeypatch, tmp_path):
    (tmp_path / "prod.yaml").write_text("trigger_label: plan-me\ngithub_api_url: https://ghe.example.com/api/v3/\n")
    monkeypatch.setenv("OMOI_CONFIG", str(tmp_path / "prod.yaml"))
    s = Settings()
    assert s.trigger_label == "plan-me" and s.github_api_url == "https://ghe.example.com/api/v3"
    monkeypatch.setenv("OMOI_TRIGGER_LABEL", "from-env")
    monkeypatch.setenv("OMOI_ANTHROPIC_BASE_URL", "http://a")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://b")
    s = Settings()
    assert s.trigger_label == "from-env" and s.anthropic_base_url == "http://a"


def test_private_key_from_env_with_escaped_newlines(monkeypatch):
    monkeypatch.setenv("OMOI_GITHUB_PRIVATE_KEY", "-----BEGIN KEY-----\\nabc\\n-----END KEY-----")
    assert Settings().private_key_pem() == "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    assert "-----BEGIN KEY-----\\nabc\\n-----END KEY-----" in Settings().secret_values()
