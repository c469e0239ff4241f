"""Where untrusted work runs: a fresh clone per task, confined (see base.py for the interface).

    provider = make_sandbox(settings)
    sb = await provider.create(repo_url=url_with_token, ref="main", label="spec-12-task-3")
    try:
        res = await sb.exec("pytest -q", timeout=300)
        patch = await sb.diff()
    finally:
        await sb.destroy()

Settings read (with getattr defaults, so older Settings classes still work):
`sandbox_provider` ("local" | "daytona", default "local"), `sandbox_network` (False),
`sandbox_timeout_seconds`, `daytona_api_url`, `daytona_api_key`, optional `daytona_target`,
`daytona_snapshot`, `sandbox_dir`.
"""
from __future__ import annotations

from typing import Any

from app.sandbox.base import ExecResult, Sandbox, SandboxError, SandboxProvider

PROVIDERS = ("local", "daytona")


def make_sandbox(settings: Any) -> SandboxProvider:
    """The provider named by `settings.sandbox_provider`."""
    name = str(getattr(settings, "sandbox_provider", None) or "local").strip().lower()
    if name == "local":
        # Each provider's module is loaded only when it is the one configured.
        from app.sandbox.local import LocalSandboxProvider

        return LocalSandboxProvider(settings)
    if name == "daytona":
        # loaded only when it is the one configured (the Daytona SDK later still, per call)
        from app.sandbox.daytona import DaytonaSandboxProvider

        return DaytonaSandboxProvider(settings)
    raise SandboxError(f"unknown sandbox_provider {name!r}; expected one of {', '.join(PROVIDERS)}")


make_sandbox_provider = make_sandbox

__all__ = ["Sandbox", "SandboxProvider", "ExecResult", "SandboxError", "make_sandbox", "make_sandbox_provider"]
