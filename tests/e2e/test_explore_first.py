"""Explore before specifying (issue 17 item 1), through the real web process and worker and the real
agent CLI in a real (jailed) sandbox, the model played by the Anthropic stand-in: a read-only agent
reads the repository before the requirements; its findings reach the requirements and design prompts
as data and are shown collapsed in the requirements comment. Off (the repository's `.github/omoi.yml`)
or failing, the digest alone: planning goes on."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db.models import LLMCall, Spec
from app.db.session import session_scope
from tests.fakes.anthropic import Reply, forced_tool, offered_tools, request_text, tool_results
from tests.support.conversation import comment, label, omoi_comments
from tests.support.plans import GREETER_FILES, GREETER_REQUIREMENTS, greeter_design
from tests.support.waits import wait_for
from tests.support.world import Issue, Site

REPO = "octo/greeter"
SITE = Site(REPO, 91, GREETER_FILES, people={"alice": "maintain"},
            issues={5: Issue("Greet users", "Print Hello when run.", "alice")})
FINDINGS = "Relevant files: greeter.py has an empty main(); tests/test_greeter.py is the only test."


class Explorer:
    """The explore agent's model: read greeter.py, then report (or fail, when `broken`)."""

    def __init__(self, fake, broken: bool = False):
        self.broken, self.read, self.requests = broken, [], []
        fake.script = self

    def __call__(self, req):
        text = request_text(req)
        if "omoi-explore: spec-" not in text or forced_tool(req):
            return None  # the planning calls: the tool rules below
        self.requests.append(req)
        if self.broken:
            return Reply.error(400, "fake: this explore session is refused")
        results = tool_results(req)
        if not results:
            workdir = text.split("Working directory: ", 1)[1].split()[0]
            return Reply.tool("Read", {"file_path": f"{workdir}/greeter.py"})
        self.read.append(json.dumps(results))
        return Reply.text(FINDINGS)


@pytest.fixture
def exploring(fake_github, fake_anthropic, omoi_world, tmp_path):
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_design_draft", greeter_design(), once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)

    def start(files: dict | None = None):
        return omoi_world(github=fake_github, anthropic=fake_anthropic, site=SITE.with_files(files),
                          extra_env={"OMOI_SPEC_EXPLORE": "true", "OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes"),
                                     "OMOI_AGENT_TIMEOUT_SECONDS": "90"})
    return start


def planning_requests(fake_anthropic, tool: str) -> list[str]:
    return [request_text(r) for r in fake_anthropic.message_requests() if forced_tool(r) == tool]


def requirements_comment(world) -> str:
    def ready():
        found = omoi_comments(world, "<!-- omoi:spec stage=requirements ")
        return found[0]["body"] if found and "waiting for approval" in found[0]["body"] else None
    return wait_for(ready, timeout=90, message=lambda: world.log_text("worker")[-4000:])


def explored(world) -> dict:
    with session_scope(world.database_url) as s:
        return (s.scalars(select(Spec)).one().planning or {}).get("explore") or {}


def test_findings_feed_requirements_and_design_and_show_collapsed(exploring, fake_anthropic):
    explorer = Explorer(fake_anthropic)
    world = exploring()
    label(world)
    body = requirements_comment(world)
    # the agent really read the repository in its sandbox, with read-only tools only
    assert explorer.read and "def main():" in explorer.read[0]
    assert set(offered_tools(explorer.requests[0])) >= {"Read", "Glob", "Grep"}
    assert not {"Write", "Edit", "Bash"} & set(offered_tools(explorer.requests[0]))
    assert "Print Hello when run." in request_text(explorer.requests[0])  # it knew what the issue asks
    assert explored(world)["status"] == "done"
    with session_scope(world.database_url) as s:  # its cost counts in the spec's budget
        assert [c.purpose for c in s.scalars(select(LLMCall)) if c.purpose == "explore" and c.cost_usd > 0] == ["explore"]
    req = planning_requests(fake_anthropic, "emit_requirements_draft")
    assert len(req) == 1 and f"<findings>\n{FINDINGS}\n</findings>" in req[0]
    assert "<details><summary>What omoi found exploring the repository</summary>" in body
    assert "greeter.py has an empty main()" in body.split("<details><summary>What omoi found")[1]

    comment(world, "/omoi approve")
    wait_for(lambda: planning_requests(fake_anthropic, "emit_design_draft"), timeout=60, message="design request")
    assert FINDINGS in planning_requests(fake_anthropic, "emit_design_draft")[0]
    assert len(explorer.requests) == 2  # once per spec: the design did not explore again


def test_a_failed_exploration_falls_back_to_the_digest(exploring, fake_anthropic):
    explorer = Explorer(fake_anthropic, broken=True)
    world = exploring()
    label(world)
    body = requirements_comment(world)
    assert explorer.requests and explored(world)["status"] == "failed"
    req = planning_requests(fake_anthropic, "emit_requirements_draft")
    assert "<findings>" not in req[0] and "greeter.py" in req[0]  # the digest still names the files
    assert "What omoi found exploring" not in body


def test_the_repository_can_turn_it_off(exploring, fake_anthropic):
    explorer = Explorer(fake_anthropic)
    world = exploring({".github/omoi.yml": "explore_first: false\n"})
    label(world)
    requirements_comment(world)
    assert explorer.requests == [] and explored(world) == {"status": "off"}
