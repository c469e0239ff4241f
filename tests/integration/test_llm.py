"""app/llm/structured.py through the real anthropic SDK against tests/fakes/anthropic.py, plus one run of
the real Claude Code CLI (bundled in claude-agent-sdk) against the same stand-in."""
from __future__ import annotations

import subprocess
import time
from decimal import Decimal

import anthropic
import pytest
from pydantic import BaseModel, Field
from sqlalchemy import select

from app.db.models import LLMCall
from app.db.session import session_scope
from app.llm.structured import (
    LLMNotConfigured,
    LLMOutputInvalid,
    Usage,
    cost_usd,
    structured_output,
    tool_name_for,
    usage_totals,
)
from tests.fakes.anthropic import FakeAnthropic, Reply, is_repair


class Verdict(BaseModel):
    """A review verdict."""

    verdict: str
    confidence: float = Field(ge=0, le=1)


class Step(BaseModel):
    title: str
    files: list[str] = []


class Risk(BaseModel):
    level: int = Field(ge=1, le=3)
    note: str


class SpecPlan(BaseModel):
    summary: str
    steps: list[Step]
    risk: Risk | None = None


PLAN = {
    "summary": "Add a flag",
    "steps": [{"title": "parse", "files": ["cli.py"]}, {"title": "test"}],
    "risk": {"level": 2, "note": "touches CLI"},
}


def rows() -> list[LLMCall]:
    with session_scope() as s:
        return list(s.scalars(select(LLMCall).order_by(LLMCall.id)))


@pytest.fixture
def llm(omoi_env, fake_anthropic, monkeypatch):
    from app.config import reset_settings_cache

    monkeypatch.setenv("OMOI_LLM_MAX_RETRIES", "2")
    reset_settings_cache()
    return fake_anthropic


async def test_simple_model(llm):
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 0.9})
    out = await structured_output("Review this.", Verdict, purpose="review", spec_id=7,
                                  model="claude-haiku-4-5")
    assert out == Verdict(verdict="approve", confidence=0.9)

    req = llm.requests[-1]
    body = req.json
    assert req.path == "/v1/messages"
    assert req.headers.get("authorization") == "Bearer sk-fake-test-key" or req.headers.get("x-api-key")
    assert body["model"] == "claude-haiku-4-5"
    assert body["tool_choice"] == {"type": "tool", "name": "emit_verdict"}
    assert [t["name"] for t in body["tools"]] == ["emit_verdict"]
    assert body["tools"][0]["input_schema"] == Verdict.model_json_schema()
    assert body["stream"] is True  # SSE path of the fake

    [row] = rows()
    assert (row.ok, row.purpose, row.spec_id, row.model) == (True, "review", 7, "claude-haiku-4-5")
    assert row.input_tokens > 0 and row.output_tokens > 0
    assert row.cost_usd > 0
    assert row.duration_ms >= 0


async def test_nested_model_and_schema_defs(llm):
    llm.on_tool(tool_name_for(SpecPlan), PLAN)
    out = await structured_output("Plan it.", SpecPlan)
    assert out.steps[1] == Step(title="test", files=[])
    assert out.risk == Risk(level=2, note="touches CLI")
    body = llm.message_requests()[-1]
    schema = body["tools"][0]["input_schema"]
    assert "$defs" in schema and schema == SpecPlan.model_json_schema()
    assert body["model"] == "claude-sonnet-4-5"  # settings.model_planner by default


async def test_repair_after_invalid_output(llm):
    llm.on_tool("emit_spec_plan", {"summary": "x", "steps": [{"files": ["a"]}], "risk": {"level": 9, "note": "n"}},
                on_repair=PLAN)
    out = await structured_output("Plan it.", SpecPlan, purpose="plan", spec_id=3)
    assert out.summary == "Add a flag"

    first, second = llm.message_requests()
    assert not is_repair(first) and is_repair(second)
    assert second["tool_choice"] == {"type": "tool", "name": "emit_spec_plan"}
    assistant, result = second["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["content"][-1]["type"] == "tool_use"
    [tr] = result["content"]
    assert tr["type"] == "tool_result" and tr["is_error"] is True
    assert tr["tool_use_id"] == assistant["content"][-1]["id"]
    assert "steps.0.title" in tr["content"] and "risk.level" in tr["content"]

    r = rows()
    assert [x.ok for x in r] == [False, True]
    assert r[0].error.startswith("invalid output") and r[1].error is None
    assert r[0].purpose == "plan" and r[1].purpose == "plan:repair"
    assert all(x.spec_id == 3 for x in r)


async def test_double_invalid_raises(llm):
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 7})
    with pytest.raises(LLMOutputInvalid) as info:
        await structured_output("Review.", Verdict, spec_id=1)
    assert info.value.errors and info.value.errors[0]["loc"] == ("confidence",)
    assert info.value.output == {"verdict": "approve", "confidence": 7}
    assert len(llm.message_requests()) == 2
    assert [x.ok for x in rows()] == [False, False]


async def test_no_tool_call_is_repaired(llm):
    # A script can answer in text only (ignoring the forced tool) the first time.
    llm.script = lambda req: None if "must answer by calling" in str(req["messages"]) else Reply.text("hmm")
    llm.on_tool("emit_verdict", {"verdict": "ok", "confidence": 0.5})
    out = await structured_output("Review.", Verdict)
    assert out.verdict == "ok"
    assert [x.ok for x in rows()] == [False, True]


async def test_429_retried_by_sdk(llm):
    llm.fail_next(429, headers={"retry-after": "0.05"})
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 1})
    out = await structured_output("Review.", Verdict)
    assert out.confidence == 1
    statuses = [r.status for r in llm.requests]
    assert statuses == [429, 200]
    assert [x.ok for x in rows()] == [True]  # the SDK's retry is one logical call


async def test_529_exhausted_raises_and_is_recorded(llm):
    llm.fail_next(529, times=10, message="fake overloaded")
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 1})
    with pytest.raises(anthropic.APIStatusError) as info:
        await structured_output("Review.", Verdict, spec_id=5)
    assert info.value.status_code == 529
    assert len(llm.requests) == 3  # 1 + OMOI_LLM_MAX_RETRIES=2
    [row] = rows()
    assert row.ok is False and "529" in row.error and row.spec_id == 5
    assert "sk-fake-test-key" not in row.error


async def test_cache_control_and_cache_usage(llm):
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 0.3})
    digest = "repository digest\n" * 500
    for _ in range(2):
        await structured_output("Review.", Verdict, system="You review code.", context=digest,
                                feedback=["be brief"])
    body = llm.message_requests()[0]
    assert body["system"] == [{"type": "text", "text": "You review code.", "cache_control": {"type": "ephemeral"}}]
    first_block, prompt_block = body["messages"][0]["content"]
    assert first_block == {"type": "text", "text": digest, "cache_control": {"type": "ephemeral"}}
    assert "Review." in prompt_block["text"] and "- be brief" in prompt_block["text"]
    assert "cache_control" not in prompt_block

    first, second = rows()
    assert first.cache_creation_input_tokens > 2000 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    assert second.cost_usd < first.cost_usd


async def test_cost_and_usage_totals(llm):
    llm.on_tool("emit_verdict", {"verdict": "approve", "confidence": 0.3})
    await structured_output("a", Verdict, spec_id=11, model="claude-opus-4-5-20251101")
    await structured_output("b", Verdict, spec_id=11, model="some-unknown-model")
    await structured_output("c", Verdict, spec_id=12)
    r = rows()
    for row in r:
        expected = cost_usd(row.model, Usage(row.input_tokens, row.output_tokens,
                                             row.cache_creation_input_tokens, row.cache_read_input_tokens))
        assert Decimal(row.cost_usd) == expected
    opus = r[0]
    assert Decimal(opus.cost_usd) == (Decimal(opus.input_tokens) * 5 + Decimal(opus.output_tokens) * 25) / 10**6
    totals = usage_totals(11)
    assert totals["calls"] == 2 and totals["failed_calls"] == 0
    assert totals["input_tokens"] == r[0].input_tokens + r[1].input_tokens
    assert totals["cost_usd"] == Decimal(r[0].cost_usd) + Decimal(r[1].cost_usd)
    assert usage_totals(999)["calls"] == 0 and usage_totals(999)["cost_usd"] == 0


def test_cost_table():
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000,
              cache_creation_input_tokens=1_000_000, cache_read_input_tokens=1_000_000)
    assert cost_usd("claude-sonnet-4-5", u) == Decimal("3") + 15 + Decimal("3.75") + Decimal("0.3")
    assert cost_usd("claude-haiku-4-5-20251001", u) == 1 + 5 + Decimal("1.25") + Decimal("0.1")
    assert cost_usd("mystery", u) == cost_usd("claude-sonnet-4-5", u)


async def test_not_configured(omoi_env, monkeypatch):
    from app.config import reset_settings_cache

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OMOI_ANTHROPIC_API_KEY", raising=False)
    reset_settings_cache()
    with pytest.raises(LLMNotConfigured):
        await structured_output("x", Verdict)


async def test_fake_json_mode_and_count_tokens(fake_anthropic):
    """The fake's non-streaming and count_tokens paths, straight through the SDK."""
    client = anthropic.AsyncAnthropic(base_url=fake_anthropic.url, api_key="dummy", max_retries=0)
    fake_anthropic.on_tool("report", {"a": [1, 2]})
    msg = await client.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "report", "input_schema": {"type": "object"}}],
        tool_choice={"type": "tool", "name": "report"},
    )
    assert msg.stop_reason == "tool_use" and msg.content[0].input == {"a": [1, 2]}
    msg = await client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.stop_reason == "end_turn" and msg.content[0].text == "Done."
    count = await client.messages.count_tokens(model="m", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens > 0
    # A tool_result without its tool_use is rejected, as by the real API.
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="m", max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}]}])
    await client.close()


async def test_claude_code_cli_against_fake(tmp_path):
    """The real Claude Code CLI completes a Write session against the stand-in."""
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    home = tmp_path / "home"
    home.mkdir()
    target = repo / "hello.txt"

    with FakeAnthropic() as fake:
        fake.on_tool("Write", {"file_path": str(target), "content": "hello from fake claude\n"})
        fake.default_reply = Reply.text("Wrote hello.txt.")
        env = {
            "ANTHROPIC_BASE_URL": fake.url,
            "ANTHROPIC_API_KEY": "dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "HOME": str(home),
        }
        opts = ClaudeAgentOptions(cwd=str(repo), permission_mode="acceptEdits", env=env, max_turns=5,
                                  model="claude-sonnet-4-5")
        started = time.monotonic()
        results = [m async for m in query(prompt="Create hello.txt", options=opts) if isinstance(m, ResultMessage)]
        elapsed = time.monotonic() - started

        assert target.read_text() == "hello from fake claude\n"
        assert results and results[-1].is_error is False
        assert fake.unhandled == []
        turns = fake.message_requests()
        assert len(turns) == 2 and all(r.query.get("beta") == "true" for r in fake.requests)
        assert turns[1]["messages"][-1]["content"][0]["type"] == "tool_result"
    assert elapsed < 15, elapsed
