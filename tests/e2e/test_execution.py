"""Execution end to end: approved tasks -> agent sessions in sandboxes -> omoi's commits on the branch
-> `omoi / implement` check run -> draft pull request, through the real web process, real Celery
workers, the real Claude Code CLI (against the Anthropic stand-in) and real git behind the GitHub
stand-in. People act by commenting in the stand-in or pressing check-run buttons (webhooks).
"""
from __future__ import annotations

import json
import os
import re
import time

import pytest
from sqlalchemy import select

from app.db.models import Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution.gitwork import Clone, commit_and_push
from app.planning.schemas import TasksDraft, assign_ids, assign_task_ids, RequirementsDraft
from tests.conftest import (
    WEBHOOK_SECRET,
    _create_pg_database,
    _drop_pg_database,
    base_env,
    free_port,
    postgres_available,
    redis_available,
    require_service,
    wait_for,
)
from tests.fakes.anthropic import Reply, request_text, tool_results
from tests.fakes.webhooks import (
    _installation_ref,
    _rewrite_api_url,
    _rewrite_repository,
    example,
    issue_comment_created_payload,
    post_delivery,
    user_json,
)

REPO = "octo/greeter"
INSTALLATION = 91
ISSUE = 5
BRANCH = "omoi/issue-5-greet-users"
FILES = {"README.md": "# greeter\n", "greeter.py": "print('hi')\n"}

REQUIREMENTS = assign_ids(RequirementsDraft.model_validate({
    "summary": "Users want friendly greetings.",
    "stories": [{"title": "Greeting", "as_a": "user", "i_want": "greetings", "so_that": "I feel welcome",
                 "priority": "must", "criteria": [
                     {"pattern": "event", "text": "WHEN asked, THE SYSTEM SHALL say Hello", "verification": "hello check"},
                     {"pattern": "event", "text": "WHEN leaving, THE SYSTEM SHALL say Bye", "verification": "bye check"},
                     {"pattern": "event", "text": "WHEN run, THE SYSTEM SHALL greet", "verification": "main check"}]}],
}))
DESIGN = {"overview": "Two small modules and a main that uses them.", "components": [], "decisions": [],
          "file_plan": [], "risks": [], "testing_strategy": "python checks"}


def task(key, covers, path, verify, depends_on=()):
    return {"key": key, "title": f"Write {path}", "description": f"Create {path}.", "covers": covers,
            "depends_on": list(depends_on), "files": [{"path": path, "action": "create"}], "verify": verify,
            "size": "S", "kind": "implement"}


HAPPY = [
    task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'"]),
    task("bye", ["R1.2"], "bye.py", ["python3 -c 'import bye; assert bye.bye() == \"Bye\"'"]),
    task("main", ["R1.3"], "main.py", ["python3 main.py | grep -q 'Hello Bye'"], depends_on=["hello", "bye"]),
]
CODE = {
    "hello.py": "def greet():\n    return 'Hello'\n",
    "bye.py": "def bye():\n    return 'Bye'\n",
    "main.py": "from hello import greet\nfrom bye import bye\nprint(greet(), bye())\n",
}


class Agent:
    """The model's side of each CLI session, chosen from the task id and paths in the prompt."""

    def __init__(self, fake, writes: dict[str, tuple[str, str]]):
        self.writes = writes  # task id -> (path, content)
        self.slow: dict[str, float] = {}  # task id -> seconds the first Bash call blocks before finishing, once
        self.seen: set[str] = set()
        # Claude Code cuts a bare `sleep` short; `timeout N tail -f /dev/null` really blocks N seconds.
        self.slow_command = "timeout {seconds} tail -f /dev/null || true"
        fake.script = self

    def __call__(self, req):
        text = request_text(req)
        m, wd = re.search(r"omoi-task: (T\d+)", text), re.search(r"omoi-sandbox: (\S+)", text)
        if not m or not wd:
            return None
        tid, results = m.group(1), tool_results(req)
        if not results:
            path, content = self.writes[tid]
            workdir = re.search(r"Working directory: (\S+)", text).group(1)  # /workspace, or Daytona's
            return Reply.tool("Write", {"file_path": f"{workdir}/{path}", "content": content})
        if len(results) == 1 and tid in self.slow and tid not in self.seen:
            self.seen.add(tid)
            return Reply.tool("Bash", {"command": self.slow_command.format(seconds=self.slow[tid]),
                                       "description": "think"})
        return Reply.text(f"{tid} is done.")


def start_run_world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes, *, database: str,
                    broker: str = "", files: dict | None = None, extra_env: dict | None = None):
    """The repo, issue and branch of an approved spec on the GitHub stand-in, and omoi's web process
    and worker (with beat every second) against it, on `database` and `broker`."""
    fake_github.add_installation(INSTALLATION, "octo")
    fake_github.add_repo(REPO, installation_id=INSTALLATION, files={**FILES, **(files or {})})
    fake_github.set_permission(REPO, "alice", "maintain")
    fake_github.add_issue(REPO, ISSUE, title="Greet users", body="Say hello and bye.", user="alice")
    # the spec files were committed to the issue's branch when the stages were approved
    fake_github.push_human_commit(REPO, BRANCH, {".omoi/specs/5/tasks.md": "# tasks\n"},
                                  "omoi: approved tasks r1 for #5", author=("omoi[bot]", "4242+omoi[bot]@users.noreply.github.com"))
    env = base_env(fake_github, rsa_keypair, database, broker, tmp_path / "data", free_port())
    env |= {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": "sk-fake-test-key",
            "OMOI_WORKER_CONCURRENCY": "3", "OMOI_TASK_LEASE_SECONDS": "3", "OMOI_TASK_HEARTBEAT_SECONDS": "0.5",
            "OMOI_HEALTH_INTERVAL_SECONDS": "1", "OMOI_TASK_RETRY_BACKOFF_SECONDS": "0.2",
            "OMOI_TASK_MAX_ATTEMPTS": "2", "OMOI_VERIFY_TIMEOUT_SECONDS": "30", "OMOI_AGENT_TIMEOUT_SECONDS": "90",
            **(extra_env or {})}
    procs = omoi_processes(env)
    procs.start("web", "web")
    procs.wait_healthy()
    procs.start("worker", "worker", "--beat")
    procs.database_url = env["OMOI_DATABASE_URL"]
    procs.fake = fake_github
    return procs


@pytest.fixture
def running(request, fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes):
    """omoi running against the stand-ins; SQLite and the embedded broker unless a test asks for
    `postgresql` (PostgreSQL and Redis, the production pair) through indirect parametrisation."""
    # The embedded broker (the README's default), with beat firing every second: this is what caught
    # kombu's half-written message files (fixed in tasks/fs_transport.py).
    database, broker = f"sqlite:///{tmp_path}/omoi.db", ""
    if getattr(request, "param", "sqlite") == "postgresql":
        require_service(postgres_available() and redis_available(), "PostgreSQL and Redis")
        database, broker = _create_pg_database(), "redis://127.0.0.1:6379/13"
        request.addfinalizer(lambda: _drop_pg_database(database))
    procs = start_run_world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes, database=database,
                            broker=broker, extra_env={"OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes")})
    request.addfinalizer(procs.stop_all)  # finalizers run last-registered first: processes, then their database
    return procs


def approve_plan(procs, tasks: list[dict]) -> int:
    """The spec as `/omoi approve` leaves it: three approved stages, state approved."""
    with session_scope(procs.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=INSTALLATION, title="Greet users",
                    state="approved", branch=BRANCH, base_sha=procs.fake.branch_sha(REPO, "main"))
        s.add(spec)
        s.flush()
        docs = {"requirements": REQUIREMENTS.model_dump(mode="json"), "design": DESIGN,
                "tasks": assign_task_ids(TasksDraft.model_validate({"tasks": tasks})).model_dump(mode="json")}
        for stage, doc in docs.items():
            s.add(SpecStage(spec_id=spec.id, stage=stage, revision=1, status="approved", document=doc,
                            approved_by="alice"))
        return spec.id


def comment(procs, body, sender="alice"):
    created = procs.fake.add_issue_comment(REPO, ISSUE, body=body, user=sender)
    payload = issue_comment_created_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=ISSUE,
                                            body=body, sender_login=sender, comment_id=created["id"])
    assert post_delivery(procs.url + "/webhooks/github", "issue_comment", payload, WEBHOOK_SECRET)[0] == 202
    return created["id"]


def reply_to(fake, comment_id):
    return next((c["body"] for c in fake.issue_comments(REPO, ISSUE)
                 if c["body"].startswith(f"<!-- omoi:reply to={comment_id} ")), None)


def press_button(procs, check_run: dict, identifier: str, sender="alice"):
    """GitHub's `check_run` / `requested_action` delivery for a button on our check run."""
    payload = _rewrite_repository(example("check_run", "requested_action"), REPO)
    payload.pop("organization", None)
    payload["check_run"].update({"id": check_run["id"], "name": check_run["name"], "head_sha": check_run["head_sha"],
                                 "app": {**payload["check_run"]["app"], "id": 4242, "slug": "omoi"}})
    payload["check_run"]["check_suite"]["head_branch"] = BRANCH
    payload["requested_action"] = {"identifier": identifier}
    payload["sender"] = user_json(sender)
    payload["installation"] = _installation_ref(INSTALLATION)
    payload = _rewrite_api_url(payload, None)
    assert post_delivery(procs.url + "/webhooks/github", "check_run", payload, WEBHOOK_SECRET)[0] == 202


def tracking(fake):
    found = [c["body"] for c in fake.issue_comments(REPO, ISSUE) if c["body"].startswith("<!-- omoi:run ")]
    assert len(found) <= 1, "duplicate tracking comments"
    return found[0] if found else ""


def implement_check(fake):
    """The `omoi / implement` check run on the branch head."""
    head = fake.branch_sha(REPO, BRANCH)
    runs = [r for r in fake.check_runs(REPO) if r["name"] == "omoi / implement" and r["head_sha"] == head]
    return runs[-1] if runs else None


def run_state(procs) -> str | None:
    with session_scope(procs.database_url) as s:
        return s.scalars(select(Spec.run_state)).first()


def tasks_in_db(procs) -> dict[str, SpecTask]:
    with session_scope(procs.database_url) as s:
        return {t.task_id: t for t in s.scalars(select(SpecTask))}


def wait_run(procs, state, timeout=90):
    def explain():  # at the time-out: the run and its tasks as the database has them, then the workers' logs
        tasks = {t: (r.status, r.attempts, r.lease_owner, r.error) for t, r in sorted(tasks_in_db(procs).items())}
        noise = ("omoi.schedule[", "omoi.execution_health[", "Scheduler: Sending")  # beat's every-second chatter
        quiet = lambda n: "\n".join(ln for ln in procs.log_text(n).splitlines() if not any(x in ln for x in noise))  # noqa: E731
        logs = "".join(f"\n--- {n}\n{quiet(n)[-6000:]}" for n in ("worker", "worker2") if n in procs.procs)
        return f"run {state}; it is {run_state(procs)!r}, check {implement_check(procs.fake)!r}; tasks {tasks}{logs}"
    return wait_for(lambda: run_state(procs) == state and (implement_check(procs.fake) or {}).get("status") == "completed",
                    timeout=timeout, message=explain)


def task_commits(fake) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in fake.commits(REPO, BRANCH):
        for key in re.findall(r"^Omoi-Task: (\S+)$", c["message"], re.M):
            out.setdefault(key, []).append(c["sha"])
    return out


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("running", ["sqlite", "postgresql"], indirect=True)
def test_approved_tasks_become_commits_check_run_and_pull_request(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"]),
                           "T3": ("main.py", CODE["main.py"])})
    spec_id = approve_plan(procs, HAPPY)
    c = comment(procs, "/omoi implement")
    assert "Implementing the approved tasks" in wait_for(lambda: reply_to(fake, c), message="implement reply")
    # the draft PR opens early, before any task finished
    pr = wait_for(lambda: fake.pull_requests(REPO), message="draft PR")[0]
    assert pr["draft"] is True and pr["head"]["ref"] == BRANCH and pr["base"]["ref"] == "main"
    wait_run(procs, "succeeded")

    # one commit per task, by omoi, with the trailer, each with exactly the task's file
    commits = task_commits(fake)
    assert {k: len(v) for k, v in commits.items()} == {f"{spec_id}/T1": 1, f"{spec_id}/T2": 1, f"{spec_id}/T3": 1}
    by_sha = {c["sha"]: c for c in fake.commits(REPO, BRANCH)}
    for tid, path in (("T1", "hello.py"), ("T2", "bye.py"), ("T3", "main.py")):
        commit = by_sha[commits[f"{spec_id}/{tid}"][0]]
        assert commit["files"] == [path] and commit["author"].startswith("omoi[bot] <")
        assert commit["message"].startswith(f"{tid}: Write {path} (#5)")
        assert fake.file_at(REPO, BRANCH, path) == CODE[path]
    assert all(ref == f"refs/heads/{BRANCH}" for _, ref, _, _ in fake.pushes)  # never main, never forced
    db = tasks_in_db(procs)
    assert {t.status for t in db.values()} == {"done"}
    assert all(t.evidence and t.evidence[-1]["exit_code"] == 0 for t in db.values())
    # T3 ran after T1 and T2 (its dependencies) finished
    assert db["T3"].started_at >= max(db["T1"].finished_at, db["T2"].finished_at)

    check = implement_check(fake)
    assert check["conclusion"] == "success" and "All 3 tasks done" in check["output"]["title"]
    assert "T3" in check["output"]["summary"]
    body = fake.pull_request(REPO, pr["number"])["body"]
    assert body.startswith("Closes #5")
    for rid, tid in (("R1.1", "T1"), ("R1.2", "T2"), ("R1.3", "T3")):
        row = next(line for line in body.splitlines() if line.startswith(f"| **{rid}**"))
        assert tid in row and commits[f"{spec_id}/{tid}"][0][:7] in row and "✅" in row
    assert "python3 main.py | grep -q 'Hello Bye'" in body
    # every task done and verified: the draft became a pull request ready for review (GraphQL)
    wait_for(lambda: fake.pull_request(REPO, pr["number"])["draft"] is False, message="PR ready for review")
    assert len(fake.pull_requests(REPO)) == 1 and fake.calls_matching("POST", r"^/graphql$")
    assert "All 3 tasks are done" in tracking(fake)
    # buttons: Cancel while running, none once it succeeded
    posted = [call.json for call in fake.calls if call.method in ("POST", "PATCH") and "/check-runs" in call.path
              and isinstance(call.json, dict) and "actions" in call.json]
    assert any(a["identifier"] == "cancel" for p in posted for a in p["actions"])
    assert posted[-1]["actions"] == []
    assert fake.violations == []
    assert fake_anthropic.unhandled == []


def test_failing_verify_is_retried_reported_and_resumed(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    plan = [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'"])]
    agent = Agent(fake_anthropic, {"T1": ("hello.py", "def greet():\n    return 'Howdy'\n")})
    approve_plan(procs, plan)
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "failed" and t1.attempts == 2 and "exited with 1" in t1.error
    assert implement_check(fake)["conclusion"] == "failure"
    text = tracking(fake)
    assert "The run stopped" in text and "T1" in text and "`/omoi retry`" in text and "after 2 attempts" in text
    assert task_commits(fake) == {} and fake.pull_requests(REPO)[0]["draft"] is True

    agent.writes["T1"] = ("hello.py", CODE["hello.py"])  # the next session gets it right
    c = comment(procs, "/omoi retry T1")
    assert "Retrying T1" in wait_for(lambda: reply_to(fake, c), message="retry reply")
    wait_run(procs, "succeeded")
    assert len(task_commits(fake)) == 1 and implement_check(fake)["conclusion"] == "success"
    assert fake.violations == []


def test_killed_worker_is_recovered_without_duplicate_commits(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    agent.slow["T1"] = 30  # the first session is busy in `sleep` when its worker is killed
    agent.slow_command = "sleep {seconds}"
    spec_id = approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_for(lambda: (tasks_in_db(procs).get("T1") and tasks_in_db(procs)["T1"].heartbeat_at is not None
                      and agent.seen), timeout=60, message=lambda: "T1 running\n" + procs.log_text("worker")[-3000:])
    procs.start("worker2", "worker", "--beat")
    procs.stop("worker", 9)  # SIGKILL: no clean-up, no message ack, the lease just stops being renewed
    # recovery waits for the lease to lapse and the next health sweep; slow on a loaded 2-core machine
    wait_run(procs, "succeeded", timeout=180)
    t1 = tasks_in_db(procs)["T1"]
    assert t1.attempts == 2 and t1.status == "done"
    assert {k: len(v) for k, v in task_commits(fake).items()} == {f"{spec_id}/T1": 1}
    assert fake.violations == []


def test_change_to_workflows_is_refused(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    plan = [task("ci", ["R1.1"], ".github/workflows/ci.yml", [])]
    Agent(fake_anthropic, {"T1": (".github/workflows/ci.yml", "on: push\njobs: {}\n")})
    approve_plan(procs, plan)
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.attempts == 1 and "blocked path `.github/**`" in t1.error
    assert ".github/workflows/ci.yml" in tracking(fake) and implement_check(fake)["conclusion"] == "failure"
    assert task_commits(fake) == {} and fake.file_at(REPO, BRANCH, ".github/workflows/ci.yml") is None
    assert fake.violations == []


def test_worker_without_a_jail_refuses_to_run_agents(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes):
    """Fail closed: where the local sandbox cannot be built, no agent and no repository code runs;
    the run fails visibly with the reason, on the first attempt, and nothing reaches the model."""
    procs = start_run_world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes,
                            database=f"sqlite:///{tmp_path}/omoi.db", broker="",
                            extra_env={"OMOI_SANDBOX_BWRAP": str(tmp_path / "no-such-bwrap")})
    try:
        Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
        approve_plan(procs, HAPPY[:1])
        comment(procs, "/omoi implement")
        wait_run(procs, "failed")
        t1 = tasks_in_db(procs)["T1"]
        assert t1.attempts == 1 and "will not run untrusted code unconfined" in t1.error
        assert "UNSAFE_ALLOW_UNCONFINED_SANDBOX" in t1.error
        check = implement_check(fake_github)
        assert "will not run untrusted code unconfined" in (check["output"].get("text") or "") + \
            check["output"]["summary"] + tracking(fake_github)
        assert implement_check(fake_github)["conclusion"] == "failure"
        assert fake_anthropic.message_requests() == [] and task_commits(fake_github) == {}
    finally:
        procs.stop_all()


def test_plan_runs_on_daytona_with_the_agent_inside(fake_github, fake_anthropic, fake_daytona, rsa_keypair, tmp_path,
                                                   omoi_processes):
    """OMOI_SANDBOX_PROVIDER=daytona through the real web and worker: every task's agent runs in a
    Daytona stand-in sandbox (whose paths do not exist on this host), reaches the model only through
    the web process's /model-proxy, and the plan ends in a ready PR; nothing sent to Daytona carries a
    credential, and every sandbox is deleted."""
    procs = start_run_world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes,
                            database=f"sqlite:///{tmp_path}/omoi.db", broker="",
                            extra_env={"OMOI_SANDBOX_PROVIDER": "daytona", "OMOI_DAYTONA_API_URL": fake_daytona.api_url,
                                       "OMOI_DAYTONA_API_KEY": "dtn-test-key"})
    try:
        Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"]),
                               "T3": ("main.py", CODE["main.py"])})
        spec_id = approve_plan(procs, HAPPY)
        comment(procs, "/omoi implement")
        wait_run(procs, "succeeded", timeout=240)
        assert {t.status for t in tasks_in_db(procs).values()} == {"done"}
        assert fake_github.file_at(REPO, BRANCH, "main.py") == CODE["main.py"]
        assert set(task_commits(fake_github)) == {f"{spec_id}/T1", f"{spec_id}/T2", f"{spec_id}/T3"}
        # The agents worked in Daytona: their Write calls named the sandbox's work dir, which is not on this host.
        writes = [b for r in fake_anthropic.message_requests() for m in r["messages"] if m["role"] == "assistant"
                  for b in (m["content"] if isinstance(m["content"], list) else []) if b.get("type") == "tool_use"]
        paths = {b["input"]["file_path"] for b in writes if b.get("name") == "Write"}
        assert paths and all(p.startswith("/home/daytona/") and not os.path.exists(p) for p in paths), paths
        # Every model call went through omoi's proxy (the stand-in only ever saw the real key).
        assert all(r.headers.get("x-api-key") == "sk-fake-test-key" for r in fake_anthropic.requests)
        sessions = [r for r in fake_daytona.requests if r.path.endswith("/process/session") and r.method == "POST"]
        assert len(sessions) >= 3
        for rec in fake_daytona.requests:
            seen = repr((rec.headers, rec.json, rec.query))
            assert "sk-fake-test-key" not in seen and "ghs_" not in seen and "BEGIN" not in seen, rec.path
        assert fake_daytona.sandboxes and all(sb.deleted for sb in fake_daytona.sandboxes.values())
        assert fake_github.violations == []
    finally:
        procs.stop_all()


class _Index:
    """A package index stand-in on 127.0.0.1 that counts what it serves."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                paths.append(self.path)
                body = b"vendored-package 1.0\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_setup_steps_reach_only_the_allow_list_and_the_agent_no_network(fake_github, fake_anthropic, rsa_keypair,
                                                                        tmp_path, omoi_processes):
    """`.github/omoi.yml` setup commands run in the sandbox before the agent, through omoi's egress proxy:
    an allow-listed index answers, anything else is refused and reported with the command that asked;
    what setup made stays out of the commit; the agent then has no network at all."""
    index, other = _Index(), _Index()
    fetch = "python3 -c \"import urllib.request as u; open('vendor.txt','wb').write(u.urlopen('http://127.0.0.1:{}/pkg').read())\""
    omoi_yml = ("setup:\n  commands:\n"
                f"    - {json.dumps(fetch.format(index.port))}\n"
                f"    - {json.dumps(fetch.format(other.port).replace('vendor.txt', 'leak.txt') + ' || echo refused')}\n"
                f"  allow: [\"127.0.0.1:{index.port}\"]\n")
    procs = start_run_world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes,
                            database=f"sqlite:///{tmp_path}/omoi.db", broker="", files={".github/omoi.yml": omoi_yml})
    try:
        def script(req):
            text = request_text(req)
            if "omoi-task: T1" not in text:
                return None
            done = len(tool_results(req))
            workdir = re.search(r"Working directory: (\S+)", text).group(1)
            if done == 0:
                return Reply.tool("Write", {"file_path": f"{workdir}/hello.py", "content": CODE["hello.py"]})
            if done == 1:
                return Reply.tool("Bash", {"command": "cat vendor.txt; " + fetch.format(index.port).replace(
                    "vendor.txt", "again.txt") + " || echo NO-NETWORK", "description": "try the index"})
            return Reply.text("T1 is done.")

        fake_anthropic.script = script
        plan = [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'",
                                                     "grep -q vendored-package vendor.txt"])]
        approve_plan(procs, plan)
        comment(procs, "/omoi implement")
        wait_run(procs, "succeeded", timeout=180)
        assert index.paths == ["/pkg"], index.paths    # setup reached it once; the agent never did
        assert other.paths == []                       # refused by the proxy, never reached
        results = [b for r in fake_anthropic.message_requests() for m in r["messages"] if m["role"] == "user"
                   and isinstance(m["content"], list) for b in m["content"] if b.get("type") == "tool_result"]
        agent_out = json.dumps(results)
        assert "vendored-package 1.0" in agent_out and "NO-NETWORK" in agent_out
        blocked = f"omoi blocked a request to `127.0.0.1:{other.port}`"
        body = wait_for(lambda: next((b for b in [fake_github.pull_requests(REPO)[0]["body"]] if blocked in b), None),
                        timeout=30, message="the final PR body")  # the last publish follows the run's end
        assert "setup: python3" in body
        assert fake_github.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"]
        assert fake_github.file_at(REPO, BRANCH, "vendor.txt") is None  # setup output is not the agent's change
    finally:
        procs.stop_all()
        index.close()
        other.close()


def test_cancel_button_stops_the_run(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    agent.slow["T1"] = 60
    fake.set_permission(REPO, "rita", "read")
    approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_for(lambda: agent.seen and implement_check(fake), timeout=60, message="T1 in its slow session")
    press_button(procs, implement_check(fake), "cancel")
    wait_run(procs, "cancelled", timeout=30)
    assert tasks_in_db(procs)["T1"].status == "cancelled"
    # the stopped session never sent its result message, but what it spent counts against the budgets
    wait_for(lambda: tasks_in_db(procs)["T1"].cost_usd > 0, timeout=20, message="the cancelled session's cost")
    assert implement_check(fake)["conclusion"] == "cancelled"
    assert "cancelled" in tracking(fake) and "`/omoi retry`" in tracking(fake)
    assert task_commits(fake) == {}
    # someone with only read access presses Retry: refused, the run stays cancelled
    press_button(procs, implement_check(fake), "retry", sender="rita")
    wait_for(lambda: fake.calls_matching("GET", r"/collaborators/rita/permission$"), message="permission check")
    time.sleep(2)
    assert tasks_in_db(procs)["T1"].status == "cancelled" and implement_check(fake)["conclusion"] == "cancelled"
    assert task_commits(fake) == {}
    assert fake.violations == []


async def test_push_is_idempotent_per_task(fake_github, rsa_keypair):
    """A worker killed after pushing: the next attempt finds its commit by trailer and pushes nothing new."""
    import asyncio

    from app.config import Settings
    from app.github.client import installation_client
    from tests.conftest import APP_ID

    fake = fake_github
    fake.add_installation(INSTALLATION, "octo")
    fake.add_repo(REPO, installation_id=INSTALLATION, files=FILES)
    fake.push_human_commit(REPO, BRANCH, {"x.txt": "x\n"}, "start")
    settings = Settings(github_app_id=str(APP_ID), github_private_key=rsa_keypair[0], github_api_url=fake.url)
    async with installation_client(settings, INSTALLATION) as gh:
        token = gh.oauth_token
    base = fake.branch_sha(REPO, BRANCH)
    patch = "diff --git a/y.txt b/y.txt\nnew file mode 100644\n--- /dev/null\n+++ b/y.txt\n@@ -0,0 +1 @@\n+y\n"
    results = []
    for _ in range(2):
        clone = Clone(url=fake.clone_url(REPO), token=token, branch=BRANCH,
                      author=("omoi[bot]", "4242+omoi[bot]@users.noreply.github.com"))
        await asyncio.to_thread(clone.clone)
        results.append(await asyncio.to_thread(commit_and_push, clone, base_sha=base, patch=patch,
                                               message="T1: y\n\nOmoi-Task: 9/T1\n", task_key="9/T1"))
        clone.cleanup()
    assert [r.existing for r in results] == [False, True] and results[0].sha == results[1].sha
    assert sum("Omoi-Task: 9/T1" in c["message"] for c in fake.commits(REPO, BRANCH)) == 1
    assert fake.violations == []
