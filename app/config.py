"""One settings class for every process.

Precedence (highest first): explicit kwargs, environment (OMOI_*), .env, the YAML named by
OMOI_CONFIG, config/base.yaml, field defaults. Secrets are only read from the environment
or .env: YAML is for settings people commit.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ROOT = Path(__file__).resolve().parents[1]
BASE_YAML = ROOT / "config" / "base.yaml"


def _alias(name: str, *extra: str) -> AliasChoices:
    # Every setting has an OMOI_ variable; a few also accept their well-known plain name. The
    # field name (how YAML spells it) comes last, so the environment wins over config/base.yaml.
    return AliasChoices(f"OMOI_{name.upper()}", *extra, name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OMOI_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    # --- GitHub App identity (secrets from env/.env only) ---
    webhook_secret: SecretStr | None = None
    github_app_id: str | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    app_name: str = "omoi"

    # --- storage and queues ---
    database_url: str = "sqlite:///.omoi/omoi.db"
    broker_url: str = ""
    queue_name: str = "omoi"  # several omoi deployments can share one Redis with distinct queues
    data_dir: Path = Path(".omoi")

    # --- web ---
    host: str = "127.0.0.1"
    port: int = 8080
    # The address people and GitHub reach this server at (App manifest URLs, status links).
    # Empty: http://127.0.0.1:<port>.
    public_url: str = ""
    # Where GitHub should deliver webhooks when that is not public_url (a smee.io channel, a tunnel).
    webhook_proxy_url: str = ""
    max_webhook_bytes: int = 25 * 1024 * 1024
    # A sender that has not finished its body by then is cut off (GitHub itself gives up after 10 s).
    webhook_body_timeout_seconds: float = Field(default=10.0, gt=0)
    # `python -m app web` processes sharing the port (SO_REUSEPORT, Linux); 1: one process.
    web_processes: int = Field(default=1, ge=1, le=64)
    worker_concurrency: int = 2

    # --- behaviour ---
    trigger_label: str = "omoi"
    allowed_bot_app_ids: list[int] = Field(default_factory=list)
    permission_cache_seconds: int = 60
    installation_token_refresh_margin_seconds: int = 300
    github_max_retries: int = 4
    github_retry_max_wait_seconds: float = 60
    delivery_stale_seconds: int = 120
    issue_lock_seconds: int = 600
    # Recovery sweep of GitHub's own delivery log (app/intake/redelivery.py, Celery beat): deliveries GitHub
    # could not hand over (connection refused, timeout, 5xx) and omoi never stored are redelivered.
    github_redelivery_interval_seconds: float = 300  # 0: no sweep
    github_redelivery_lookback_minutes: float = 60
    github_redelivery_max_attempts: int = 3     # redelivery requests per delivery, then omoi gives up
    github_redelivery_max_pages: int = 10       # pages of 100 deliveries read per sweep, newest first

    log_level: str = "INFO"
    log_json: bool = True

    # --- model API ---
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=_alias("anthropic_api_key", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str = Field(
        default="", validation_alias=_alias("anthropic_base_url", "ANTHROPIC_BASE_URL")
    )
    model_planner: str = "claude-sonnet-4-5"
    model_reviewer: str = "claude-haiku-4-5"
    llm_timeout_seconds: float = 120
    llm_max_retries: int = 3
    spec_gate_retries: int = 2  # a phase failing its gates is regenerated this many times
    # A read-only explore agent before the requirements (app/planning/explore.py); without a sandbox or when
    # it fails, the digest alone. `.github/omoi.yml` `explore_first` overrides `spec_explore`.
    spec_explore: bool = True
    spec_explore_max_turns: int = 15
    spec_explore_budget_usd: float = 1.0
    spec_explore_timeout_seconds: float = 300

    # --- review threads ---
    review_max_turns: int = 30
    review_budget_usd: float = 5.0
    review_timeout_seconds: float = 900
    # --- CI iteration (app/execution/ci_fix.py): failing checks of other apps on omoi's pull requests ---
    ci_fix_enabled: bool = True
    ci_max_fix_rounds: int = 3  # per spec; `.github/omoi.yml` `ci.max_fix_rounds` overrides it

    # --- sandboxes ---
    sandbox_provider: Literal["local", "daytona"] = "local"
    sandbox_network: bool = False
    sandbox_timeout_seconds: float = 3600
    sandbox_dir: str = ""  # where local sandboxes are created (empty: the system temp dir)
    # Limits of every local sandbox's jail (app/sandbox/jail.py): processes (per sandbox), memory (data
    # size of each process), the largest file, each private tmpfs (/tmp and $HOME), the work dir's disk use.
    sandbox_max_processes: int = 512
    sandbox_max_memory_mb: int = Field(4096, ge=768)  # Claude Code's runtime needs ~550 MB to start
    sandbox_max_file_mb: int = 1024
    sandbox_tmpfs_mb: int = 512
    sandbox_max_workdir_mb: int = 4096
    sandbox_uid_base: int = 200000  # running as root, each jail gets a host uid of its own from here
    sandbox_bwrap: str = "bwrap"    # the bubblewrap binary: a name on PATH or an absolute path
    # Without a working jail (bubblewrap, user namespaces) agents and verify commands are refused. This
    # opt-out runs them as plain processes of omoi, with omoi's files in reach: never in production.
    unsafe_allow_unconfined_sandbox: bool = False
    daytona_api_url: str = ""  # empty: the daytona SDK's default (Daytona cloud)
    daytona_api_key: SecretStr | None = None
    # CIDRs a Daytona sandbox may reach (comma-separated); empty: the public URL's address, where the
    # web process serves the model proxy. Nothing else is reachable unless sandbox_network is on.
    daytona_snapshot: str = ""  # the image sandboxes start from: it must contain the `claude` CLI
    daytona_target: str = ""    # region; empty: the organisation's default
    daytona_network_allow_list: str = ""
    daytona_create_attempts: int = 5           # 429/5xx on create are retried with exponential backoff
    daytona_create_backoff_seconds: float = 1.0

    # --- operations ---
    sentry_dsn: SecretStr | None = None  # used only when the optional sentry-sdk is installed
    sentry_environment: str = ""

    # --- execution (approved tasks -> commits, check runs, a pull request) ---
    max_parallel_tasks_per_spec: int = 3       # .github/omoi.yml concurrency.per_spec overrides it
    max_parallel_tasks_per_installation: int = 5
    task_max_attempts: int = 2
    # After verify passes, a read-only validate agent checks the acceptance criteria (app/execution/validation.py);
    # `.github/omoi.yml` `validate` overrides it. After the last failed attempt, a diagnosis (diagnosis.py).
    task_validate: bool = True
    task_validate_max_turns: int = 15
    task_validate_budget_usd: float = 1.0
    task_diagnosis: bool = True
    task_retry_backoff_seconds: float = 10     # doubled for every further attempt
    task_lease_seconds: float = 120            # a task whose lease ran out (worker died) is re-queued
    task_heartbeat_seconds: float = 20
    health_interval_seconds: float = 30        # the recovery sweep (Celery beat)
    # Workflows, actions, CODEOWNERS, dependabot: an agent's change there is refused.
    blocked_paths: list[str] = Field(default_factory=lambda: [".github/**"])
    verify_timeout_seconds: float = 600
    agent_max_turns: int = 40
    agent_timeout_seconds: float = 1800
    # The model proxy's allowance per agent session (the dollar budget is the task's or review's budget).
    agent_max_tokens_per_request: int = 128000
    agent_max_session_tokens: int = 20_000_000

    # --- budgets, discovery, supervision (issue 6) ---
    installation_monthly_usd_ceiling: float = 1000.0  # all repos of one installation per month; 0: none
    max_discovered_tasks_per_spec: int = 3
    discovery_similarity: float = 0.85     # difflib ratio of normalised titles that counts as a duplicate
    stall_minutes: float = 30              # a running spec without progress this long is reported
    guardian_enabled: bool = True
    guardian_interval_seconds: float = 60  # LLM judgement of each running task's trajectory
    guardian_min_tool_calls: int = 4       # judge a trajectory only once it has this many tool calls
    guardian_redirect: bool = True         # first drifting/stuck verdict: a message into the running session
    conductor_interval_seconds: float = 300  # duplicate work across a spec's running tasks

    @field_validator("github_api_url", "github_web_url", "public_url", "webhook_proxy_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = [BASE_YAML]
        if os.environ.get("OMOI_CONFIG"):
            files.append(Path(os.environ["OMOI_CONFIG"]))
        yaml = YamlConfigSettingsSource(settings_cls, yaml_file=files, deep_merge=True)
        return (init_settings, env_settings, dotenv_settings, yaml, file_secret_settings)

    # --- derived values ---
    def private_key_pem(self) -> str | None:
        if self.github_private_key is not None:
            # .env files often carry the PEM on one line with literal \n.
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            return Path(self.github_private_key_path).read_text()
        return None

    def resolved_public_url(self) -> str:
        return self.public_url or f"http://127.0.0.1:{self.port}"

    def has_app_credentials(self) -> bool:
        """An App id and a private key: what the setup flow (app/web/setup.py) writes to .env."""
        if not self.github_app_id:
            return False
        if self.github_private_key is not None and self.github_private_key.get_secret_value().strip():
            return True
        return self.github_private_key_path is not None

    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    def broker_transport_options(self) -> dict:
        if self.resolved_broker_url().startswith("filesystem://"):
            queue_dir = Path(self.data_dir).resolve() / "broker"
            (queue_dir / "queue").mkdir(parents=True, exist_ok=True)
            (queue_dir / "processed").mkdir(parents=True, exist_ok=True)
            (queue_dir / "control").mkdir(parents=True, exist_ok=True)
            return {
                "data_folder_in": str(queue_dir / "queue"),
                "data_folder_out": str(queue_dir / "queue"),
                "processed_folder": str(queue_dir / "processed"),
                # kombu writes broadcast/control state here; default is ./control in the cwd.
                "control_folder": str(queue_dir / "control"),
                "store_processed": False,
                # The filesystem transport polls; 1 s default makes every reaction feel slow.
                "polling_interval": 0.1,
            }
        return {}

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor."""
        values = []
        for s in (self.webhook_secret, self.github_private_key, self.anthropic_api_key, self.daytona_api_key,
                  self.sentry_dsn):
            if s is not None and s.get_secret_value():
                values.append(s.get_secret_value())
        return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
