"""GitHub calls of one whole issue, phase by phase, at the wire: label -> requirements -> approve ->
design -> approve -> tasks -> approve -> run of a five-task plan -> ready pull request, through omoi's
real web process and worker (SQLite, the embedded broker) against the GitHub and Anthropic stand-ins.
REST + GraphQL calls (304s and writes among them) per phase, git smart-HTTP requests apart, and
every call with --calls. The same route is asserted by tests/e2e/test_call_budget.py.

    .venv/bin/python benchmarks/run_calls.py [--calls]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUIET_SECONDS = 5


def keypair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", action="store_true", help="list every call, phase by phase")
    args = parser.parse_args()
    from app.execution.run_report import PUBLISH_SPACING_SECONDS
    from tests.fakes.anthropic import FakeAnthropic
    from tests.support.call_budget import SITE, SPEC_PHASES, script_models, whole_issue
    from tests.support.world import RUN_ENV, make_world, start_github

    keys = keypair()
    with tempfile.TemporaryDirectory() as tmp, start_github(keys) as github, FakeAnthropic() as anthropic:
        agent = script_models(anthropic, PUBLISH_SPACING_SECONDS + QUIET_SECONDS + 10)
        world = make_world(Path(tmp), keys, github=github, anthropic=anthropic, site=SITE, extra_env=RUN_ENV)
        world.start_all(beat=True)
        try:
            meter = whole_issue(world, agent, publish_wait=PUBLISH_SPACING_SECONDS, quiet_seconds=QUIET_SECONDS)
        finally:
            world.stop_all()
    print(meter.report(calls=args.calls))
    print(f"spec phases with approvals: {meter.total(*SPEC_PHASES)} API calls; label -> ready pull request: "
          f"{sum(t.api for t in meter.phases.values())} API calls, "
          f"{sum(t.git for t in meter.phases.values())} git requests")


if __name__ == "__main__":
    main()
