"""One way to set up the whole system for a test that starts omoi's processes.

A Site is a repository on the GitHub stand-in: its installation, files, people (login -> permission),
issues and, for an approved spec, the issue's branch with the spec's files on it. make_world seeds
a Site and builds omoi's web process and worker for it on a chosen database and broker, wired to the
stand-ins, with extra settings; World.start_all starts them. The World is the one object a test
drives and reads: the processes (an OmoiProcesses), the stand-ins and the site. approve_plan puts an
approved spec in its database, as `/omoi approve` leaves it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from tests.support.env import APP_ID, BOT_AUTHOR, base_env, model_env
from tests.support.plans import HAPPY_DESIGN, HAPPY_REQUIREMENTS
from tests.support.processes import OmoiProcesses
from tests.support.services import free_port


class Issue(NamedTuple):
    title: str
    body: str
    user: str


@dataclass(frozen=True)
class Site:
    """A repository of an installation of the App on the GitHub stand-in."""

    repo: str
    installation: int
    files: dict[str, str]
    people: dict[str, str] = field(default_factory=dict)   # login -> permission
    issues: dict[int, Issue] = field(default_factory=dict)
    branch: str | None = None  # the issue's branch of an approved spec

    @property
    def issue(self) -> int | None:
        """The issue a test is about: the first one."""
        return next(iter(self.issues), None)

    def with_files(self, files: dict[str, str] | None) -> Site:
        return replace(self, files={**self.files, **(files or {})})

    def seed(self, fake_github) -> None:
        fake_github.add_installation(self.installation, self.repo.split("/")[0])
        fake_github.add_repo(self.repo, installation_id=self.installation, files=self.files)
        for login, level in self.people.items():
            fake_github.set_permission(self.repo, login, level)
        for number, issue in self.issues.items():
            fake_github.add_issue(self.repo, number, title=issue.title, body=issue.body, user=issue.user)
        if self.branch:  # the spec files were committed to the issue's branch when the stages were approved
            fake_github.push_human_commit(self.repo, self.branch, {f".omoi/specs/{self.issue}/tasks.md": "# tasks\n"},
                                          f"omoi: approved tasks r1 for #{self.issue}", author=BOT_AUTHOR)


# The execution tests' repository: issue 5, whose spec (tests/support/plans.py HAPPY) was approved.
APPROVED = Site("octo/greeter", 91, {"README.md": "# greeter\n", "greeter.py": "print('hi')\n"},
                people={"alice": "maintain"}, issues={5: Issue("Greet users", "Say hello and bye.", "alice")},
                branch="omoi/issue-5-greet-users")
# Runs go fast: short leases and heartbeats, a health sweep every second, quick retries, 2 attempts.
RUN_ENV = {"OMOI_WORKER_CONCURRENCY": "3", "OMOI_TASK_LEASE_SECONDS": "3", "OMOI_TASK_HEARTBEAT_SECONDS": "0.5",
           "OMOI_HEALTH_INTERVAL_SECONDS": "1", "OMOI_TASK_RETRY_BACKOFF_SECONDS": "0.2",
           "OMOI_TASK_MAX_ATTEMPTS": "2", "OMOI_VERIFY_TIMEOUT_SECONDS": "30", "OMOI_AGENT_TIMEOUT_SECONDS": "90",
           # a validate session per task would need a scripted conversation in every test (test_validation.py)
           "OMOI_TASK_VALIDATE": "false"}
# The guardian and the conductor look at running sessions every second or two.
SUPERVISION_ENV = {"OMOI_GUARDIAN_INTERVAL_SECONDS": "1", "OMOI_GUARDIAN_MIN_TOOL_CALLS": "3",
                   "OMOI_CONDUCTOR_INTERVAL_SECONDS": "2"}


class World(OmoiProcesses):
    """omoi's processes, the stand-ins they talk to (`github`, `anthropic`; either may be None) and
    the Site seeded for them."""

    def __init__(self, env: dict, workdir: Path, *, github=None, anthropic=None, site: Site | None = None) -> None:
        super().__init__(env, workdir)
        self.github, self.anthropic, self.site = github, anthropic, site
        self.database_url = env["OMOI_DATABASE_URL"]

    @property
    def webhook_secret(self) -> str | None:
        return self.env.get("OMOI_WEBHOOK_SECRET")

    @property
    def private_key(self) -> str | None:
        return self.env.get("OMOI_GITHUB_PRIVATE_KEY")

    def start_all(self, *, beat: bool = False, worker: bool = True) -> World:
        """The web process and, unless `worker` is False, a worker: started together, or, with Celery
        beat in the worker (`beat`), once the web process answers. Everything is stopped again if
        they do not come up."""
        try:
            self.start("web", "web")
            if worker and not beat:
                self.start("worker", "worker")
            self.wait_healthy()
            if worker and beat:
                self.start("worker", "worker", "--beat")
        except BaseException:
            self.stop_all()
            raise
        return self


def start_github(rsa_keypair):
    """The GitHub stand-in for the App omoi is configured as (APP_ID, its public key), validating
    every request against GitHub's OpenAPI description."""
    from tests.fakes.github import FakeGitHub

    return FakeGitHub(app_id=APP_ID, app_slug="omoi", public_key_pem=rsa_keypair[1], validate=True).start()


def make_world(workdir: Path, rsa_keypair, *, github=None, anthropic=None, site: Site | None = None,
               database: str | None = None, broker: str = "", data_dir: Path | None = None,
               extra_env: dict | None = None, without: tuple[str, ...] = (), cls: type[World] = World) -> World:
    """Seed `site` on the GitHub stand-in `github` and build (not start) omoi's processes in
    `workdir`: on `database` (SQLite in `workdir` by default) and `broker` ("" is the embedded
    broker), the Anthropic stand-in's URL and key when one is given, `extra_env` on top, and the
    variables named in `without` unset (also where the test process has them)."""
    if site is not None:
        site.seed(github)
    env = base_env(github, rsa_keypair, database or f"sqlite:///{workdir}/omoi.db", broker,
                   data_dir or workdir / "data", free_port())
    if anthropic is not None:
        env |= model_env(anthropic)
    world = cls(env | (extra_env or {}), workdir, github=github, anthropic=anthropic, site=site)
    for key in without:
        world.env.pop(key, None)
    return world


def approve_plan(world: World, tasks: list[dict], *, requirements=HAPPY_REQUIREMENTS, design=HAPPY_DESIGN) -> int:
    """The spec of the site's issue as `/omoi approve` leaves it: three approved stages (`tasks` as
    the tasks draft), state approved; its id."""
    from app.db.models import Spec, SpecStage
    from app.db.session import session_scope
    from app.planning.schemas import TasksDraft, assign_task_ids

    site = world.site
    with session_scope(world.database_url) as s:
        spec = Spec(repo_full_name=site.repo, issue_number=site.issue, installation_id=site.installation,
                    title=site.issues[site.issue].title, state="approved", branch=site.branch,
                    base_sha=world.github.branch_sha(site.repo, "main"))
        s.add(spec)
        s.flush()
        docs = {"requirements": requirements.model_dump(mode="json"), "design": design,
                "tasks": assign_task_ids(TasksDraft.model_validate({"tasks": tasks})).model_dump(mode="json")}
        for stage, doc in docs.items():
            s.add(SpecStage(spec_id=spec.id, stage=stage, revision=1, status="approved", document=doc,
                            approved_by="alice"))
        return spec.id
