"""Where the agent runs, end to end: through the real web process and worker, a task's agent
runs in the local jail or not at all (fail closed), in a Daytona stand-in sandbox reaching the model
only through omoi's proxy, and after `.github/omoi.yml` setup steps that reach only the allow-list.
"""
from __future__ import annotations

import json
import os
import re

from tests.fakes.anthropic import Reply, request_text, tool_results
from tests.support.agents import Agent
from tests.support.conversation import comment, implement_check, task_commits, tracking
from tests.support.plans import CODE, HAPPY, task
from tests.support.servers import PackageIndex
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch


def test_worker_without_a_jail_refuses_to_run_agents(approved_run, fake_github, fake_anthropic, tmp_path):
    """Fail closed: where the local sandbox cannot be built, no agent and no repository code runs;
    the run fails visibly with the reason, on the first attempt, and nothing reaches the model."""
    procs = approved_run(extra_env={"OMOI_SANDBOX_BWRAP": str(tmp_path / "no-such-bwrap")})
    Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.attempts == 1 and t1.error == "task/sandbox_unavailable"
    assert "will not run untrusted code unconfined" in t1.error_params["detail"]
    assert "UNSAFE_ALLOW_UNCONFINED_SANDBOX" in t1.error_params["detail"]
    check = implement_check(procs)
    assert "will not run untrusted code unconfined" in (check["output"].get("text") or "") + \
        check["output"]["summary"] + tracking(procs)
    assert implement_check(procs)["conclusion"] == "failure"
    assert fake_anthropic.message_requests() == [] and task_commits(procs) == {}


def test_plan_runs_on_daytona_with_the_agent_inside(approved_run, fake_github, fake_anthropic,
                                                   fake_daytona):
    """OMOI_SANDBOX_PROVIDER=daytona through the real web and worker: every task's agent runs in a
    Daytona stand-in sandbox (whose paths do not exist on this host), reaches the model only through
    the web process's /model-proxy, and the plan ends in a ready PR; nothing sent to Daytona carries a
    credential, and every sandbox is deleted."""
    procs = approved_run(extra_env={"OMOI_SANDBOX_PROVIDER": "daytona", "OMOI_DAYTONA_API_URL": fake_daytona.api_url,
                                    "OMOI_DAYTONA_API_KEY": "dtn-test-key"})
    Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"]),
                           "T3": ("main.py", CODE["main.py"])})
    spec_id = approve_plan(procs, HAPPY)
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=240)
    assert {t.status for t in tasks_in_db(procs).values()} == {"done"}
    assert fake_github.file_at(REPO, BRANCH, "main.py") == CODE["main.py"]
    assert set(task_commits(procs)) == {f"{spec_id}/T1", f"{spec_id}/T2", f"{spec_id}/T3"}
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


def test_setup_steps_reach_only_the_allow_list_and_the_agent_no_network(approved_run, fake_github,
                                                                        fake_anthropic):
    """`.github/omoi.yml` setup commands run in the sandbox before the agent, through omoi's egress proxy:
    an allow-listed index answers, anything else is refused and reported with the command that asked;
    what setup made stays out of the commit; the agent then has no network at all."""
    index, other = PackageIndex(), PackageIndex()
    fetch = "python3 -c \"import urllib.request as u; open('vendor.txt','wb').write(u.urlopen('http://127.0.0.1:{}/pkg').read())\""
    omoi_yml = ("setup:\n  commands:\n"
                f"    - {json.dumps(fetch.format(index.port))}\n"
                f"    - {json.dumps(fetch.format(other.port).replace('vendor.txt', 'leak.txt') + ' || echo refused')}\n"
                f"  allow: [\"127.0.0.1:{index.port}\"]\n")
    procs = approved_run(files={".github/omoi.yml": omoi_yml})
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
        index.close()
        other.close()
