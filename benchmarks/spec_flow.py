"""Spec planning overhead: omoi's own time per phase and GitHub API calls per phase, at the wire.

Runs requirements -> design -> tasks (with approvals) in-process against the GitHub and
Anthropic stand-ins. "Own time" is the phase's wall time minus the time spent waiting for
the model (the LLMCall durations omoi records), so it measures omoi, not the stand-in. The calls
are what the GitHub stand-in received (REST + GraphQL; 304s and writes among them; git smart-HTTP
apart), phase by phase (tests/support/call_budget.py). The whole route, label -> ready pull request
of a five-task plan through omoi's real processes, is counted by tests/e2e/test_call_budget.py
(`pytest tests/e2e/test_call_budget.py -s` prints it phase by phase).

    .venv/bin/python benchmarks/spec_flow.py [--runs 5] [--calls]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402


def keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


async def one_spec(settings, fake_gh, number: int) -> tuple[dict[str, float], dict[str, object]]:
    from sqlalchemy import func, select

    from app.db.models import LLMCall
    from app.db.session import session_scope
    from app.github.client import installation_client
    from app.planning import flow
    from tests.support.call_budget import Meter

    fake_gh.add_issue("octo/greeter", number, title="Greet users", body="Print Hello.", user="alice")
    spec_id, _ = flow.start_spec(settings, "octo/greeter", number, repository_id=1, installation_id=91,
                                 title="Greet users", requested_by="alice")
    meter = Meter(fake_gh)
    own: dict[str, float] = {}
    async with installation_client(settings, 91) as gh:
        for stage in flow.STAGES:
            with session_scope(settings.database_url) as s:
                llm_before = s.scalar(select(func.coalesce(func.sum(LLMCall.duration_ms), 0))
                                      .where(LLMCall.spec_id == spec_id))
            t0 = time.perf_counter()
            assert await flow.generate(gh, settings, spec_id, stage) == "waiting"
            meter.close(stage)
            flow.approve(settings, spec_id, "alice", stage, None)
            await flow.write_spec_file(gh, settings, spec_id, stage)  # as /omoi approve does
            await flow.publish(gh, settings, spec_id, [stage])
            meter.close(f"approve {stage}")
            wall = time.perf_counter() - t0
            with session_scope(settings.database_url) as s:
                llm_ms = s.scalar(select(func.coalesce(func.sum(LLMCall.duration_ms), 0))
                                  .where(LLMCall.spec_id == spec_id)) - llm_before
            own[stage] = wall - llm_ms / 1000
    return own, dict(meter.phases)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", action="store_true", help="list the first spec's calls, phase by phase")
    args = parser.parse_args()
    from tests.fakes.anthropic import FakeAnthropic
    from tests.fakes.github import FakeGitHub
    from tests.support.plans import GREETER_FILES as FILES, GREETER_REQUIREMENTS as REQUIREMENTS, GREETER_TASKS as TASKS, greeter_design as design

    private, public = keypair()
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(app_id=4242, app_slug="omoi", public_key_pem=public,
                                                          validate=False) as gh_fake, FakeAnthropic() as llm_fake:
        os.chdir(tmp)
        os.environ.update({
            "OMOI_WEBHOOK_SECRET": "x", "OMOI_GITHUB_APP_ID": "4242", "OMOI_GITHUB_PRIVATE_KEY": private,
            "OMOI_GITHUB_API_URL": gh_fake.url, "OMOI_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "ANTHROPIC_BASE_URL": llm_fake.url, "ANTHROPIC_API_KEY": "sk-fake", "OMOI_LOG_LEVEL": "WARNING",
        })
        from app.config import get_settings
        from app.db.migrate import upgrade
        from app.observability.logs import configure_logging

        settings = get_settings()
        configure_logging("WARNING", True, [])
        upgrade(settings.database_url)
        gh_fake.add_installation(91, "octo")
        gh_fake.add_repo("octo/greeter", installation_id=91, files=FILES)
        llm_fake.on_tool("emit_requirements_draft", REQUIREMENTS, once=False)
        llm_fake.on_tool("emit_design_draft", design(), once=False)
        llm_fake.on_tool("emit_tasks_draft", TASKS, once=False)
        llm_fake.on_tool("emit_review", {"findings": []}, once=False)
        per_stage: dict[str, list[float]] = {}
        api_calls, phases = [], {}
        for i in range(args.runs + 1):
            own, tallies = asyncio.run(one_spec(settings, gh_fake, 100 + i))
            if i == 0:
                first = tallies  # a cold start: the token, the repository's config read once
                continue
            api_calls.append(sum(t.api for t in tallies.values()))
            phases = tallies
            for stage, seconds in own.items():
                per_stage.setdefault(stage, []).append(seconds)
    for stage, values in per_stage.items():
        print(f"{stage:13s} omoi overhead median {statistics.median(values) * 1000:7.1f} ms "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}; {len(values)} runs)")
    print("GitHub calls per phase at the wire (the in-process flow: no webhook intake, reactions or replies):")
    for name, tally in first.items():
        print(f"  {name:22s} first spec: {tally}; later specs: {phases[name]}")
    print(f"GitHub API calls per full spec (3 phases + 3 approvals, spec files committed): first "
          f"{sum(t.api for t in first.values())}, then median {statistics.median(api_calls):.0f}")
    if "--calls" in sys.argv:
        for name, tally in first.items():
            print(f"{name}:\n" + "\n".join(f"    {line}" for line in tally.lines))


if __name__ == "__main__":
    main()
