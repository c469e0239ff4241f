"""How the Claude Code CLI of one session is started, reaches the model, and is stopped.

Three ways, chosen by the sandbox:
- jailed (a local sandbox with `use_bwrap`): the SDK starts `sandbox.agent_launcher(...)` as its
  "CLI", which enters the sandbox's jail (app/sandbox/jail.py) and execs Claude Code there; the model
  proxy listens on the sandbox's unix socket, reached inside the jail through a loopback forwarder on
  `PROXY_PORT`; the session ends with SIGKILL of the jail, whose PID namespace takes every process along;
- remote (Daytona, `remote_agent`): the CLI runs in the remote sandbox through the sandbox's SDK
  transport (app/sandbox/daytona_agent.py); its proxy session lives in the database and is served by
  the web process at `<public URL>/model-proxy`; the transport's close ends it;
- unconfined (only with the unsafe opt-in `unsafe_allow_unconfined_sandbox`): the CLI runs on the host
  through an env wrapper, with the proxy on loopback TCP; ended by killing every process in its work dir.

Either way the CLI's environment is built from scratch (only allow-listed names) and holds no
credential: its `ANTHROPIC_API_KEY` is the model proxy's per-session token (app/agent/model_proxy.py).
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from app.agent import model_proxy
from app.sandbox.clone import DEFAULT_PATH
from app.sandbox.jail import INSIDE_PATH
from app.text.rendering import Reason, reason

# Variables the SDK itself sets for the CLI (kept by the env wrapper).
SDK_ENV_NAMES = (
    "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_AGENT_SDK_VERSION", "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    "CLAUDE_AGENT_SDK_CLIENT_APP", "CLAUDE_AGENT_SDK_DERIVED_CLIENT_APP",
    "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
)  # not PWD: the SDK sets it to the host path; the jail sets its own
PROXY_PORT = 8787  # inside the jail: the loopback forwarder to the model proxy's socket


def bundled_cli() -> str:
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if path.is_file():
        return str(path)
    found = shutil.which("claude")
    if found:
        return found
    raise FileNotFoundError("Claude Code CLI not found (claude_agent_sdk/_bundled/claude or `claude` on PATH)")


def agent_env(settings: Any, home: str, *, api_key: str, base_url: str, path: str | None = None) -> dict[str, str]:
    """The CLI's whole environment: no credential but the model proxy's session token."""
    return {
        "PATH": path or DEFAULT_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",  # keeps __pycache__ out of the diff
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(getattr(settings, "llm_max_retries", 3)),
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_BASE_URL": base_url,
    }


def write_env_wrapper(directory: Path, cli: str, keep: list[str]) -> str:
    """A shell script that starts `cli` with only the `keep` variables of its environment."""
    for name in keep:
        if not name.replace("_", "").isalnum() or name[0].isdigit():
            raise ValueError(f"bad environment variable name {name!r}")
    kept = " ".join(f'${{{n}+"{n}=${n}"}}' for n in keep)
    script = directory / "claude-env"
    script.write_text(f'#!/bin/sh\nexec /usr/bin/env -i {kept} {shlex.quote(cli)} "$@"\n')
    script.chmod(0o700)
    return str(script)


def refusal(sandbox: Any) -> Reason | None:
    """Why this sandbox cannot run an agent (None when it can)."""
    remote = bool(getattr(sandbox, "remote_agent", False))  # Daytona: the CLI runs in the remote sandbox
    jailed = bool(getattr(sandbox, "use_bwrap", False))
    if not (remote or jailed or getattr(sandbox, "unconfined_agent_ok", False)):
        return reason("agent/not_confined")
    if not remote and not os.path.isdir(sandbox.workdir):
        return reason("agent/no_workdir", workdir=repr(sandbox.workdir))
    return None


@asynccontextmanager
async def proxy_for(settings: Any, sandbox: Any, jailed: bool, limits: dict):
    """The model proxy for one session: the web process's, with the session in the database (a remote
    sandbox); on the sandbox's socket (jailed); or on loopback TCP (unconfined)."""
    if getattr(sandbox, "remote_agent", False):
        async with model_proxy.remote_session(settings, label=f"sandbox {sandbox.id}", **limits) as session:
            yield session, settings.resolved_public_url() + model_proxy.PREFIX
    elif jailed:
        async with model_proxy.serve_unix(settings, sandbox.model_socket(), uid=sandbox.jail.uid, **limits) as proxy:
            yield proxy, f"http://127.0.0.1:{PROXY_PORT}"
    else:
        async with model_proxy.serve_tcp(settings, **limits) as (proxy, url):
            yield proxy, url


def start(settings: Any, sandbox: Any, *, token: str, base_url: str, tmp: str, remote: bool,
          jailed: bool) -> tuple[dict[str, str], str | None, Any]:
    """(env, cli_path, transport) for the SDK: the jail launcher, the remote transport, or the env wrapper."""
    if remote:
        env = {**agent_env(settings, sandbox.agent_home, api_key=token, base_url=base_url),
               "CLAUDE_CODE_ENTRYPOINT": "sdk-py"}
        return env, None, sandbox.agent_transport  # (prompt, options, env, stderr) -> Transport
    if jailed:
        env = agent_env(settings, sandbox.home, api_key=token, base_url=base_url, path=INSIDE_PATH)
        return env, sandbox.agent_launcher(bundled_cli(), sorted(set(env) | set(SDK_ENV_NAMES)),
                                           proxy_port=PROXY_PORT), None
    home = os.path.join(tmp, "home")
    os.mkdir(home, 0o700)
    env = agent_env(settings, home, api_key=token, base_url=base_url, path=os.environ.get("PATH") or DEFAULT_PATH)
    return env, write_env_wrapper(Path(tmp), bundled_cli(), sorted(set(env) | set(SDK_ENV_NAMES))), None


def end(sandbox: Any, jailed: bool) -> int:
    """Hard-stop the agent and everything it started (a remote agent: its transport's close ends it)."""
    if getattr(sandbox, "remote_agent", False):
        return 0
    if jailed:
        return sandbox.kill_agent()
    return kill_processes_in(sandbox.workdir)


def kill_processes_in(workdir: str) -> int:
    """SIGKILL every process of ours whose working directory is `workdir` or below it (the CLI runs
    with cwd=workdir; its commands start there). Linux /proc; returns how many were signalled."""
    root = os.path.realpath(workdir).rstrip("/")
    me, count = os.getpid(), 0
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        if pid == me:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + "/"):
            try:
                os.kill(pid, signal.SIGKILL)
                count += 1
            except OSError:
                pass
    return count
