"""Per-repository settings from `.github/omoi.yml` on the default branch, merged over omoi's settings.

The file is validated against a schema with defaults (`RepoConfig`). A broken file never stops omoi:
the issue being handled gets one comment naming the bad key (once per version of the file), and omoi
carries on with the defaults. What omoi acts on is the effective configuration (`Effective`): the
file merged over the deployment's settings once, here (`effective`, `load_effective`), so no caller
decides again which of the two wins.
"""
from __future__ import annotations

import base64

import gidgethub
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import Settings
from app.db import claims
from app.github import comments
from app.text.rendering import Reason, explain, reason, render
from app.text import markers

PATH = ".github/omoi.yml"


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task_usd: float = Field(5.0, gt=0)
    spec_usd: float = Field(50.0, gt=0)
    monthly_usd: float = Field(500.0, gt=0)
    task_minutes: int = Field(30, gt=0)


class Setup(BaseModel):
    """Commands run in the sandbox before the agent (install dependencies, build), with network only to
    `allow` (host names, `*.` wildcards, optional `:port`); the agent then runs without network."""
    model_config = ConfigDict(extra="forbid")
    commands: list[str] = Field(default_factory=list, max_length=20)
    allow: list[str] = Field(default_factory=lambda: list(_default_allow()), max_length=100)
    timeout_minutes: int = Field(10, ge=1, le=60)


def _default_allow() -> tuple[str, ...]:
    # The egress proxy's own list; reading a repository's config does not otherwise load app.sandbox.
    from app.sandbox.egress_proxy import DEFAULT_ALLOW

    return DEFAULT_ALLOW


class Concurrency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_spec: int = Field(3, ge=1, le=20)


class Models(BaseModel):
    model_config = ConfigDict(extra="forbid")
    planner: str | None = None
    reviewer: str | None = None


class CI(BaseModel):
    """Fixing failing checks on omoi's pull requests (app/execution/ci_fix.py)."""
    model_config = ConfigDict(extra="forbid")
    max_fix_rounds: int | None = Field(None, ge=0, le=10)  # None: the deployment's setting; 0: never fix
    required_checks: list[str] = Field(default_factory=list, max_length=50)  # names that must pass before ready
    verify: list[str] = Field(default_factory=list, max_length=20)  # run before a CI or review fix is pushed


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    trigger_label: str | None = Field(None, min_length=1, max_length=50)
    approvers: list[str] = Field(default_factory=list, max_length=100)  # empty: anyone with write access
    concurrency: Concurrency = Field(default_factory=Concurrency)
    budgets: Budgets = Field(default_factory=Budgets)
    blocked_paths: list[str] = Field(default_factory=lambda: [".github/**"], max_length=100)
    models: Models = Field(default_factory=Models)
    auto_resolve_threads: bool = False
    # What an agent's change may contain (app/execution/policy.py): binary files and .gitattributes are refused
    # unless the repository allows them.
    allow_binary: bool = False
    allow_gitattributes: bool = False
    setup: Setup = Field(default_factory=Setup)
    ci: CI = Field(default_factory=CI)
    explore_first: bool | None = None  # an explore agent before the requirements; None: the deployment's setting
    validation: bool | None = None  # a validate agent checks each task's criteria; None: the deployment's setting


class Effective(BaseModel):
    """What omoi does in one repository: `.github/omoi.yml` where it says so, the settings elsewhere."""
    model_config = ConfigDict(frozen=True)
    trigger_label: str
    approvers: list[str]        # empty: anyone with write access
    per_spec: int               # tasks of one spec running at once
    budgets: Budgets
    blocked_paths: list[str]
    planner_model: str
    reviewer_model: str
    auto_resolve_threads: bool
    allow_binary: bool
    allow_gitattributes: bool
    setup: Setup
    validation: bool = True


class Loaded(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)  # `error` is a Reason, kept as it is
    config: RepoConfig
    error: Reason | None = None  # what was wrong with the file, if anything (templates/reasons/config/)
    sha: str | None = None    # blob sha of the file, to report each broken version once


def parse(text: str) -> tuple[RepoConfig, Reason | None]:
    """The config in `text`, or the defaults plus the reason naming what is wrong."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return RepoConfig(), reason("config/invalid_yaml", path=PATH, line=mark.line + 1 if mark else None)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return RepoConfig(), reason("config/not_a_mapping", path=PATH)
    try:
        return RepoConfig.model_validate(data), None
    except ValidationError as exc:
        problems = [{"key": ".".join(str(p) for p in err["loc"]), "unknown": err["type"] == "extra_forbidden",
                     "message": err["msg"]} for err in exc.errors()[:5]]  # pydantic's own words for the rest
        return RepoConfig(), reason("config/invalid", path=PATH, problems=problems)


async def load(gh, settings: Settings, full_name: str) -> Loaded:
    """The file as the default branch has it; the client answers from the database while no push to the
    default branch or installation event said it changed (app/github/client.py, app/github/cache.py)."""
    owner, repo = full_name.split("/", 1)
    try:
        item = await gh.getitem("/repos/{owner}/{repo}/contents/{path}",
                                url_vars={"owner": owner, "repo": repo, "path": PATH})
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
        loaded = Loaded(config=RepoConfig())
    else:
        text = base64.b64decode(item.get("content", "")).decode("utf-8", "replace") if isinstance(item, dict) else ""
        config, error = parse(text)
        loaded = Loaded(config=config, error=error, sha=item.get("sha") if isinstance(item, dict) else None)
    return loaded


def effective(config: RepoConfig, settings: Settings) -> Effective:
    """The repository's file merged over the settings: the one place where the two are combined."""
    given = config.model_fields_set
    return Effective(
        trigger_label=config.trigger_label or settings.trigger_label,
        approvers=list(config.approvers),
        per_spec=config.concurrency.per_spec if "concurrency" in given else settings.max_parallel_tasks_per_spec,
        budgets=config.budgets,
        blocked_paths=list(config.blocked_paths if "blocked_paths" in given else settings.blocked_paths),
        planner_model=config.models.planner or settings.model_planner,
        reviewer_model=config.models.reviewer or settings.model_reviewer,
        auto_resolve_threads=config.auto_resolve_threads,
        allow_binary=config.allow_binary,
        allow_gitattributes=config.allow_gitattributes,
        setup=config.setup,
        validation=settings.task_validate if config.validation is None else config.validation,
    )


async def load_effective(gh, settings: Settings, full_name: str) -> Effective:
    """The effective configuration of `full_name` (a broken file: the settings and the file's defaults)."""
    return effective((await load(gh, settings, full_name)).config, settings)


def clear_cache() -> None:
    """Nothing is kept in the process any more (the database holds it); kept for callers."""


async def load_and_report(gh, settings: Settings, full_name: str, issue_number: int) -> Effective:
    """The effective configuration; if the file is broken, say so once on this issue (and use the defaults)."""
    loaded = await load(gh, settings, full_name)
    if loaded.error and claims.claim(f"config-error:{full_name}:{loaded.sha}", "notice"):
        await comments.upsert(gh, settings, full_name, issue_number, markers.CONFIG_ERROR.prefix(sha=loaded.sha),
                              render("replies/config_error.md.j2", error=explain(loaded.error), sha=loaded.sha))
    return effective(loaded.config, settings)
