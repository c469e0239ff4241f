"""The whole planning flow through the real web process and a real Celery worker:
label -> requirements -> approve -> design -> revise -> approve -> tasks -> approve,
with the model played by the Anthropic stand-in and GitHub by the GitHub stand-in.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.db.models import LLMCall, Spec, SpecStage, WebhookDelivery
from app.db.session import session_scope
from tests.fakes.anthropic import request_text
from tests.fakes.webhooks import issue_comment_created_payload, issues_labeled_payload, post_delivery
from tests.support.conversation import comment, reply_to
from tests.support.plans import GREETER_FILES, GREETER_REQUIREMENTS, GREETER_TASKS, greeter_design
from tests.support.env import WEBHOOK_SECRET
from tests.support.waits import wait_for
from tests.support.world import Issue, Site

REPO = "octo/greeter"
INSTALLATION = 91
SITE = Site(REPO, INSTALLATION, GREETER_FILES, people={"alice": "maintain", "rita": "read"},
            issues={5: Issue("Greet users", "Print Hello when run.", "rita")})


@pytest.fixture
def planning(fake_github, fake_anthropic, omoi_world):
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool(
        "emit_design_draft",
        lambda req: greeter_design(" Uses f-strings.") if "<feedback>" in request_text(req) else greeter_design(),
        once=False,
    )
    fake_anthropic.on_tool("emit_tasks_draft", GREETER_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": [{"severity": "info", "message": "consider a CLI flag"}]},
                           once=False)
    return omoi_world(github=fake_github, anthropic=fake_anthropic, site=SITE)


def stage_comment(fake, stage):
    found = [c for c in fake.issue_comments(REPO, 5) if c["body"].startswith(f"<!-- omoi:spec stage={stage} ")]
    assert len(found) <= 1, f"duplicate {stage} comments"
    return found[0] if found else None


def wait_stage(procs, fake, stage, rev, status_text):
    def ready():
        c = stage_comment(fake, stage)
        return c if c and f" rev={rev} " in c["body"] and status_text in c["body"] else None
    return wait_for(ready, timeout=60, message=lambda: f"{stage} r{rev} {status_text}\n{procs.log_text('worker')[-4000:]}")


def stages(procs):
    with session_scope(procs.database_url) as s:
        return [(r.stage, r.revision, r.status, r.approved_by) for r in
                s.scalars(select(SpecStage).order_by(SpecStage.id))]


def test_full_planning_flow(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    payload = issues_labeled_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=5,
                                     label="omoi", sender_login="alice")
    assert post_delivery(procs.url + "/webhooks/github", "issues", payload, WEBHOOK_SECRET)[0] == 202

    req = wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    assert "R1.1" in req["body"] and "WHEN the user runs greeter" in req["body"]
    assert "consider a CLI flag" in req["body"]  # the reviewer's advisory finding
    assert "/omoi approve" in req["body"]
    # the model saw the repository digest, in a cached block, and the issue as data
    first = fake_anthropic.message_requests()[0]
    assert "greeter.py" in request_text(first) and "<issue" in request_text(first)
    assert any(b.get("cache_control") for m in first["messages"] for b in m["content"] if isinstance(b, dict))

    # someone without write access cannot approve; they get one polite reply
    c_denied = comment(procs, "/omoi approve", sender="rita")
    wait_for(lambda: any(c["body"].startswith("<!-- omoi:refused") for c in fake.issue_comments(REPO, 5)),
             message="refusal reply")
    assert stages(procs) == [("requirements", 1, "waiting", None)]
    assert reply_to(procs, c_denied) is None

    c1 = comment(procs, "/omoi approve requirements r1")
    wait_stage(procs, fake, "requirements", 1, "approved")
    assert [r["content"] for r in fake.reactions_on_comment(REPO, c1)] == ["eyes"]
    wait_stage(procs, fake, "design", 1, "waiting for approval")
    # an approval's answer is the 👀 and the stage comment naming who approved it: no reply comment
    assert "approved by @\u200balice" in stage_comment(fake, "requirements")["body"]  # a mention that pings nobody
    assert reply_to(procs, c1) is None

    c2 = comment(procs, "/omoi revise please use f-strings")
    assert "design r2" in wait_for(lambda: reply_to(procs, c2), message="revise reply")
    d2 = wait_stage(procs, fake, "design", 2, "waiting for approval")
    assert "Changes since r1" in d2["body"] and "f-strings" in d2["body"]

    c3 = comment(procs, "/omoi approve design r1")  # stale revision
    assert "not the current revision" in wait_for(lambda: reply_to(procs, c3), message="stale reply")
    c4 = comment(procs, "/omoi approve design r2")
    wait_stage(procs, fake, "design", 2, "approved")
    tasks = wait_stage(procs, fake, "tasks", 1, "waiting for approval")
    assert "T1" in tasks["body"] and "T2" in tasks["body"]
    c5 = comment(procs, "/omoi approve")
    wait_stage(procs, fake, "tasks", 1, "approved by")  # the answer to the approval; the run's comment follows
    assert reply_to(procs, c5) is None

    assert stages(procs) == [
        ("requirements", 1, "approved", "alice"), ("design", 1, "superseded", None),
        ("design", 2, "approved", "alice"), ("tasks", 1, "approved", "alice"),
    ]
    with session_scope(procs.database_url) as s:
        spec = s.scalars(select(Spec)).one()
        assert spec.state == "approved"
        calls = s.scalars(select(LLMCall)).all()
        assert {c.purpose for c in calls} >= {"requirements", "design", "tasks", "requirements:review"}
        assert all(c.input_tokens > 0 and c.cost_usd > 0 for c in calls)
    check = [r for r in fake.check_runs(REPO) if r["name"] == "omoi / spec"]
    assert len(check) == 1 and check[0]["conclusion"] == "success"
    # its details link is a signed status page that shows the spec
    import urllib.request
    assert "/status/octo/greeter/5?exp=" in check[0]["details_url"]
    with urllib.request.urlopen(check[0]["details_url"].replace("http://127.0.0.1:8080", procs.url)) as resp:
        page = resp.read().decode()
    assert "requirements" in page.lower() and "alice" in page
    # the approved spec is committed as Markdown on the issue's branch, one commit per approval
    branches = [b for b in fake.branches(REPO) if b.startswith("omoi/issue-5-")]
    assert len(branches) == 1
    branch = branches[0]
    for stage, needle in (("requirements", "R1.1"), ("design", "f-strings"), ("tasks", "T2")):
        text = fake.file_at(REPO, branch, f".omoi/specs/5/{stage}.md")
        assert text and needle in text, stage
    messages = [c["message"] for c in fake.commits(REPO, branch)]
    assert sorted(m.strip() for m in messages if m.startswith("omoi: approved")) == [
        "omoi: approved design r2 for #5", "omoi: approved requirements r1 for #5", "omoi: approved tasks r1 for #5",
    ]
    # one comment per stage, edited in place; one reply per command comment
    bodies = [c["body"] for c in fake.issue_comments(REPO, 5)]
    assert sum(b.startswith("<!-- omoi:spec ") for b in bodies) == 3
    assert sum(b.startswith("<!-- omoi:ack") for b in bodies) == 1
    assert fake.violations == []
    assert c4


def test_broken_plan_fails_its_gates_and_is_reported(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    bad = {"tasks": [{**GREETER_TASKS["tasks"][0], "depends_on": ["impl"]}, GREETER_TASKS["tasks"][1]]}  # a cycle
    fake_anthropic.on_tool("emit_tasks_draft", bad, once=False)
    post_delivery(procs.url + "/webhooks/github", "issues", issues_labeled_payload(
        installation_id=INSTALLATION, repo_full_name=REPO, issue_number=5, label="omoi", sender_login="alice"),
        WEBHOOK_SECRET)
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    comment(procs, "/omoi approve")
    wait_stage(procs, fake, "design", 1, "waiting for approval")
    comment(procs, "/omoi approve")
    blocked = wait_stage(procs, fake, "tasks", 1, "gates failed, needs revision")
    assert re.search(r"dependency cycle: T\d → T\d → T\d", blocked["body"])
    tries = [r for r in fake_anthropic.message_requests() if r.get("tool_choice", {}).get("name") == "emit_tasks_draft"]
    assert len(tries) == 3  # first try + 2 retries with the gate findings as feedback
    assert "dependency cycle" in request_text(tries[-1])
    c = comment(procs, "/omoi approve")
    assert "failed its quality gates" in wait_for(lambda: reply_to(procs, c), message="blocked reply")
    check = [r for r in fake.check_runs(REPO) if r["name"] == "omoi / spec"]
    assert check[0]["conclusion"] == "failure"


def test_unknown_verb_gets_help_and_reject_ends_the_spec(planning, fake_github):
    procs, fake = planning, fake_github
    c = comment(procs, "/omoi frobnicate")
    body = wait_for(lambda: reply_to(procs, c), message="unknown verb reply")
    assert "unknown" in body.lower() and "`approve`" in body
    c = comment(procs, "/omoi status")
    assert "not working on this issue yet" in wait_for(lambda: reply_to(procs, c), message="status reply")
    c = comment(procs, "/omoi plan")
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    c = comment(procs, "/omoi reject not now")
    assert "rejected" in wait_for(lambda: reply_to(procs, c), message="reject reply")
    wait_stage(procs, fake, "requirements", 1, "rejected")
    with session_scope(procs.database_url) as s:
        assert s.scalars(select(Spec.state)).one() == "rejected"


def test_ask_answers_without_changing_anything(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    fake_anthropic.on_tool("emit_answer", {"answer": "`greeter.py` has an empty `main()`; @bob <b>ok</b>"},
                           once=False)
    c = comment(procs, "/omoi ask what does greeter.py do?")
    body = wait_for(lambda: reply_to(procs, c), message="answer reply")
    assert "empty `main()`" in body
    assert "<b>" not in body and "@bob" not in body  # model text cannot inject HTML or ping people
    asked = [r for r in fake_anthropic.message_requests() if r.get("tool_choice", {}).get("name") == "emit_answer"]
    assert "<question>" in request_text(asked[0]) and "greeter.py" in request_text(asked[0])
    with session_scope(procs.database_url) as s:
        assert s.scalars(select(Spec)).all() == []  # asking starts nothing
    assert fake.pushes == []


def test_edited_comment_is_not_run_again(planning, fake_github):
    procs, fake = planning, fake_github
    c = comment(procs, "/omoi help")
    wait_for(lambda: reply_to(procs, c), message="help reply")
    replies_before = [x["body"] for x in fake.issue_comments(REPO, 5) if x["body"].startswith("<!-- omoi:reply")]
    payload = issue_comment_created_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=5,
                                            body="/omoi plan", sender_login="alice", comment_id=c)
    payload["action"], payload["changes"] = "edited", {"body": {"from": "/omoi help"}}
    assert post_delivery(procs.url + "/webhooks/github", "issue_comment", payload, WEBHOOK_SECRET,
                         delivery_id="edit-1")[0] == 202

    def edit_done():
        with session_scope(procs.database_url) as s:
            return s.scalars(select(WebhookDelivery.status).where(WebhookDelivery.delivery_id == "edit-1")).first() == "done"
    wait_for(edit_done, message="edited-comment delivery processed")
    c2 = comment(procs, "/omoi status")
    wait_for(lambda: reply_to(procs, c2), message="status reply")
    replies = [x["body"] for x in fake.issue_comments(REPO, 5) if x["body"].startswith("<!-- omoi:reply")]
    assert replies[: len(replies_before)] == replies_before and len(replies) == len(replies_before) + 1
    with session_scope(procs.database_url) as s:
        assert s.scalars(select(Spec)).all() == []  # the edited-in "/omoi plan" did not run


def test_oversized_stage_links_the_full_file_on_the_branch(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    padding = "and records the outcome in the audit log " * 8
    big = {**GREETER_REQUIREMENTS, "stories": [{
        **GREETER_REQUIREMENTS["stories"][0], "title": f"Greeting {i}",
        "criteria": [{"pattern": "event", "text": f"WHEN user {i} runs greeter {j}, THE SYSTEM SHALL print Hello {padding}",
                      "verification": "pytest"} for j in range(8)],
    } for i in range(30)]}
    fake_anthropic.on_tool("emit_requirements_draft", big, once=False)
    comment(procs, "/omoi plan")
    req = wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    assert len(req["body"]) <= 65_536
    branch = next(b for b in fake.branches(REPO) if b.startswith("omoi/issue-5-"))
    link = f"/{REPO}/blob/{branch}/.omoi/specs/5/requirements.md"
    assert link in req["body"]
    full = fake.file_at(REPO, branch, ".omoi/specs/5/requirements.md")
    assert "R30.8" in full and "R30.8" not in req["body"]  # everything is in the file, not the comment
    assert fake.violations == []


def test_repository_config_picks_models_and_approvers(fake_github, fake_anthropic, omoi_world):
    fake = fake_github
    config = "models:\n  planner: claude-custom-1\napprovers: [bob]\n"
    site = Site(REPO, INSTALLATION, {**GREETER_FILES, ".github/omoi.yml": config}, people={"alice": "write", "bob": "write"},
                issues={5: Issue("Greet users", "Print Hello when run.", "alice")})
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    procs = omoi_world(github=fake, anthropic=fake_anthropic, site=site)
    comment(procs, "/omoi plan")
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    planner = [r for r in fake_anthropic.message_requests()
               if r.get("tool_choice", {}).get("name") == "emit_requirements_draft"]
    assert planner and all(r["model"] == "claude-custom-1" for r in planner)
    c = comment(procs, "/omoi approve", sender="alice")
    assert "not among them" in wait_for(lambda: reply_to(procs, c), message="approver reply")
    c = comment(procs, "/omoi approve", sender="bob")
    wait_stage(procs, fake, "requirements", 1, "approved")


def test_commands_on_one_issue_run_in_arrival_order(planning, fake_github):
    procs, fake = planning, fake_github
    verbs = ["help", "status", "help", "status", "help", "status"]
    ids = [comment(procs, f"/omoi {v}") for v in verbs]
    wait_for(lambda: all(reply_to(procs, c) for c in ids), timeout=60, message="all replies")
    replies = {int(re.search(r"omoi:reply to=(\d+)", c["body"]).group(1)): c["id"]
               for c in fake.issue_comments(REPO, 5) if c["body"].startswith("<!-- omoi:reply")}
    order = [replies[c] for c in ids]
    assert order == sorted(order)  # each reply was written after the previous command's reply


def test_reader_editing_a_comment_into_a_command_is_refused(planning, fake_github):
    procs, fake = planning, fake_github
    created = fake.add_issue_comment(REPO, 5, body="nice idea", user="rita")
    payload = issue_comment_created_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=5,
                                            body="/omoi plan", sender_login="rita", comment_id=created["id"])
    payload["action"], payload["changes"] = "edited", {"body": {"from": "nice idea"}}
    assert post_delivery(procs.url + "/webhooks/github", "issue_comment", payload, WEBHOOK_SECRET)[0] == 202
    wait_for(lambda: any(c["body"].startswith("<!-- omoi:refused") for c in fake.issue_comments(REPO, 5)),
             message="refusal reply")
    with session_scope(procs.database_url) as s:
        assert s.scalars(select(Spec)).all() == []
    assert fake.reactions_on_comment(REPO, created["id"]) == []
