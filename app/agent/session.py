"""One Claude Agent SDK session (the Claude Code CLI bundled in claude-agent-sdk) for one task.

    result = await run_agent(mode="implement", prompt=..., sandbox=sandbox,
                             settings=get_settings(), max_turns=30, max_budget_usd=2.0, timeout_s=900)

Modes and tools (`tools=` limits what the model is even offered; `allowed_tools=` is what runs
without a prompt; everything else is denied because nobody can answer a prompt):

- explore:   Read, Glob, Grep
- implement: Read, Glob, Grep, Edit, Write, Bash
- validate:  Read, Glob, Grep, Bash

`permission_mode="acceptEdits"` plus path-scoped rules `Edit(//workspace/**)` / `Write(...)`. Bash is
allowed entirely, or only the `allowed_commands` prefixes when given. No bypass mode. Settings files
are not loaded (`setting_sources=[]`): a repository's own `.claude/settings.json` is untrusted input.
These rules shape what the model is offered; they are not the security boundary.

Containment (the boundary): the Claude Code CLI itself runs inside the sandbox's jail
(app/sandbox/jail.py) - the SDK starts `sandbox.agent_launcher(...)` as its "CLI", which enters the
jail and execs Claude Code there; the stream-json control protocol (and with it in-process MCP tools
and hooks) passes through stdin/stdout. The CLI's environment is built from scratch (only
allow-listed names). It holds no credential: its `ANTHROPIC_API_KEY` is a per-session token of omoi's
model proxy (app/agent/model_proxy.py), reached through a unix socket bound into the jail; the proxy adds
the real key, enforces the session's budget and records usage. A session that ends, times out or is
cancelled is ended by SIGKILL of the jail, whose PID namespace takes every process along. The work
dir's disk use is watched; over the limit, the session is stopped. Only the opt-in
`unsafe_allow_unconfined_sandbox` runs the CLI on the host (with the same proxy over loopback TCP).

Supervision hooks (all optional, used by app/execution/task_runner.py):
- `on_message(transcript)` after every message (the guardian reads the trajectory);
- `on_cost(dollars)` with the session's running cost, estimated from each assistant message's
  usage, so a session that is stopped before its result message is still paid for;
- `redirects()` returning a pending supervisor message (or None): it is delivered into the running
  session through a PostToolUse hook (`additionalContext`), i.e. the model reads it with the next
  tool result, without stopping the session;
- `extra_tools`: in-process MCP tools (claude_agent_sdk `@tool`) offered as `mcp__omoi__<name>`,
  e.g. app/execution/discovery.py's `report_discovery`, available in every mode.

Never raises for an agent failure: the result says ok=False and why.
"""
from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
import shlex
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.observability.logs import get_logger, redact

log = get_logger("omoi.agent")

Mode = Literal["explore", "implement", "validate"]

READ_TOOLS = ["Read", "Glob", "Grep"]
MODE_TOOLS: dict[str, list[str]] = {
    "explore": READ_TOOLS,
    "implement": READ_TOOLS + ["Edit", "Write", "Bash"],
    "validate": READ_TOOLS + ["Bash"],
}
# Never available, whatever the mode.
ALWAYS_DENIED = ["WebFetch", "WebSearch", "NotebookEdit", "Task", "Agent", "Skill", "KillShell", "BashOutput"]

MODE_INSTRUCTIONS = {
    "explore": ("You are exploring a repository to answer a question. You can only read files. "
                "Do not attempt to modify anything."),
    "implement": ("You are implementing a change in a repository checked out in your working directory. "
                  "Edit files only inside it. Do not commit, push or create branches: the diff of the "
                  "working tree is collected when you finish. Keep changes focused on the task."),
    "validate": ("You are validating a change in a repository checked out in your working directory. "
                 "Run the checks you are asked to run and report the results. You cannot edit files."),
}

# Variables the SDK itself sets for the CLI (kept by the env wrapper).
SDK_ENV_NAMES = (
    "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_AGENT_SDK_VERSION", "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    "CLAUDE_AGENT_SDK_CLIENT_APP", "CLAUDE_AGENT_SDK_DERIVED_CLIENT_APP",
    "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
)  # not PWD: the SDK sets it to the host path; the jail sets its own
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_PORT = 8787  # inside the jail: the loopback forwarder to the model proxy's socket
_MAX_TRANSCRIPT_CHARS = 4000
_STDERR_LINES = 40


@dataclass
class AgentResult:
    ok: bool
    text: str = ""
    num_turns: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    error: str | None = None
    transcript: list[dict] = field(default_factory=list)
    session_id: str | None = None
    subtype: str | None = None  # ResultMessage.subtype: success, error_max_turns, error_max_budget_usd, ...
    permission_denials: list[dict] = field(default_factory=list)
    usage: dict | None = None


def _secret(value: Any) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    return (getter() if getter else str(value)) or ""


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


def edit_scope(workdir: str) -> str:
    """A permission-rule path for everything under `workdir` ("//" marks an absolute path)."""
    path = os.path.realpath(workdir).rstrip("/")
    if any(c in path for c in "(),*?[]{}") or not path.startswith("/"):
        raise ValueError(f"unsupported work dir path for permission rules: {workdir!r}")
    return f"/{path}/**"


def bash_rules(allowed_commands: list[str] | None) -> list[str]:
    if allowed_commands is None:
        return ["Bash"]
    rules = []
    for command in allowed_commands:
        command = command.strip()
        if not command or any(c in command for c in "(),"):
            raise ValueError(f"unsupported allowed command {command!r}")
        rules += [f"Bash({command})", f"Bash({command}:*)"]
    return rules


def _clip(text: Any, limit: int = _MAX_TRANSCRIPT_CHARS) -> str:
    if not isinstance(text, str):
        import json

        try:
            text = json.dumps(text, default=str)
        except (TypeError, ValueError):
            text = str(text)
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def _simplify(message: Any) -> list[dict]:
    from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage, UserMessage
    from claude_agent_sdk.types import TextBlock, ThinkingBlock, ToolResultBlock, ToolUseBlock

    out: list[dict] = []
    if isinstance(message, AssistantMessage):
        for block in message.content:
            if isinstance(block, TextBlock):
                out.append({"role": "assistant", "type": "text", "text": _clip(block.text)})
            elif isinstance(block, ToolUseBlock):
                out.append({"role": "assistant", "type": "tool_use", "id": block.id, "name": block.name,
                            "input": _clip(block.input)})
            elif isinstance(block, ThinkingBlock):
                out.append({"role": "assistant", "type": "thinking", "text": _clip(block.thinking, 1000)})
        if message.error:
            out.append({"role": "assistant", "type": "error", "error": str(message.error)})
    elif isinstance(message, UserMessage):
        content = message.content
        if isinstance(content, str):
            out.append({"role": "user", "type": "text", "text": _clip(content)})
        else:
            for block in content:
                if isinstance(block, ToolResultBlock):
                    out.append({"role": "user", "type": "tool_result", "tool_use_id": block.tool_use_id,
                                "is_error": bool(block.is_error), "content": _clip(block.content)})
                elif isinstance(block, TextBlock):
                    out.append({"role": "user", "type": "text", "text": _clip(block.text)})
    elif isinstance(message, SystemMessage):
        out.append({"role": "system", "type": message.subtype})
    elif isinstance(message, ResultMessage):
        out.append({"role": "result", "type": message.subtype, "is_error": message.is_error,
                    "num_turns": message.num_turns, "cost_usd": message.total_cost_usd,
                    "result": _clip(message.result or "")})
    return out


async def run_agent(
    *,
    mode: Mode,
    prompt: str,
    sandbox: Any,
    settings: Any,
    max_turns: int,
    max_budget_usd: float | None,
    timeout_s: float,
    allowed_commands: list[str] | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
    on_message: Any = None,
    on_cost: Any = None,
    redirects: Any = None,
    extra_tools: list | None = None,
) -> AgentResult:
    """The callbacks (see the module docstring) must be quick and must not raise."""
    started = time.monotonic()
    transcript: list[dict] = []
    stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
    state: dict[str, Any] = {"result": None, "last_text": ""}
    meter = CostMeter()

    def fail(error: str) -> AgentResult:
        res = state["result"]
        return AgentResult(
            ok=False, text=(res.result if res is not None and res.result else state["last_text"]),
            num_turns=res.num_turns if res is not None else sum(1 for t in transcript if t.get("type") == "tool_use"),
            cost_usd=float(res.total_cost_usd or 0) if res is not None else meter.total,
            duration_s=time.monotonic() - started, error=redact(error)[:4000], transcript=transcript,
            session_id=res.session_id if res is not None else None, subtype=res.subtype if res is not None else None,
            permission_denials=list(getattr(res, "permission_denials", None) or []) if res is not None else [],
            usage=res.usage if res is not None else None,
        )

    if mode not in MODE_TOOLS:
        return fail(f"unknown agent mode {mode!r}")
    remote = bool(getattr(sandbox, "remote_agent", False))  # Daytona: the CLI runs in the remote sandbox
    jailed = bool(getattr(sandbox, "use_bwrap", False))
    if not (remote or jailed or getattr(sandbox, "unconfined_agent_ok", False)):
        return fail("this sandbox cannot run an agent: the agent runs only inside a confined sandbox")
    workdir, cwd = sandbox.workdir, sandbox.agent_cwd
    if not remote and not os.path.isdir(workdir):
        return fail(f"work dir {workdir!r} does not exist")
    if not _secret(getattr(settings, "anthropic_api_key", None)):
        return fail("no Anthropic API key configured: set ANTHROPIC_API_KEY or OMOI_ANTHROPIC_API_KEY")

    try:
        from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, query
        from claude_agent_sdk.types import TextBlock

        tools = list(MODE_TOOLS[mode])
        # Only Bash gets an explicit rule. Reads (default rule) and edits (acceptEdits) are then allowed
        # inside the work dir only; a bare "Read" or "Write" rule would allow any host path.
        allowed: list[str] = [f"{t}({edit_scope(cwd)})" for t in ("Edit", "Write") if t in tools]
        if "Bash" in tools:
            allowed += bash_rules(allowed_commands)
        denied = list(ALWAYS_DENIED) + [t for t in ("Write", "Edit", "Bash") if t not in tools]
        mcp_servers, hooks = {}, None
        if extra_tools:
            from claude_agent_sdk import create_sdk_mcp_server

            mcp_servers["omoi"] = create_sdk_mcp_server("omoi", tools=list(extra_tools))
            allowed += [f"mcp__omoi__{t.name}" for t in extra_tools]
        if redirects is not None:
            from claude_agent_sdk import HookMatcher

            hooks = {"PostToolUse": [HookMatcher(hooks=[_redirect_hook(redirects)])]}
    except Exception as exc:  # noqa: BLE001
        return fail(f"agent setup failed: {type(exc).__name__}: {exc}")

    limits = {"max_usd": max_budget_usd, "max_tokens_per_request": getattr(settings, "agent_max_tokens_per_request", None),
              "max_tokens_total": getattr(settings, "agent_max_session_tokens", None)}
    tmp = tempfile.mkdtemp(prefix="omoi-agent-")
    stopped: list[str] = []
    try:
        async with _proxy(settings, sandbox, jailed, limits) as (proxy, base_url):
            transport = None
            if remote:
                env = {**agent_env(settings, sandbox.agent_home, api_key=proxy.token, base_url=base_url),
                       "CLAUDE_CODE_ENTRYPOINT": "sdk-py"}
                cli = None
                transport = sandbox.agent_transport  # (prompt, options, env, stderr) -> Transport
            elif jailed:
                from app.sandbox.jail import INSIDE_PATH

                env = agent_env(settings, sandbox.home, api_key=proxy.token, base_url=base_url, path=INSIDE_PATH)
                cli = sandbox.agent_launcher(bundled_cli(), sorted(set(env) | set(SDK_ENV_NAMES)), proxy_port=PROXY_PORT)
            else:
                home = os.path.join(tmp, "home")
                os.mkdir(home, 0o700)
                env = agent_env(settings, home, api_key=proxy.token, base_url=base_url,
                                path=os.environ.get("PATH") or DEFAULT_PATH)
                cli = write_env_wrapper(Path(tmp), bundled_cli(), sorted(set(env) | set(SDK_ENV_NAMES)))
            options = ClaudeAgentOptions(
                cwd=workdir,  # where the launcher starts on the host; inside the jail it is `cwd`
                cli_path=cli,
                env=env,
                model=model or getattr(settings, "model_planner", None),
                tools=tools,
                allowed_tools=allowed,
                disallowed_tools=denied,
                # acceptEdits also auto-approves file commands (touch, mkdir, mv) in Bash: only for modes that edit.
                permission_mode="acceptEdits" if "Edit" in tools else "default",
                setting_sources=[],
                max_turns=max_turns,
                max_budget_usd=max_budget_usd,
                system_prompt={"type": "preset", "preset": "claude_code",
                               "append": system_prompt or MODE_INSTRUCTIONS[mode]},
                stderr=lambda line: stderr_tail.append(line),
                mcp_servers=mcp_servers,
                hooks=hooks,
            )

            async def consume() -> None:
                stream = query(prompt=prompt, options=options, transport=None if transport is None else
                               transport(prompt, options, env, lambda line: stderr_tail.append(line)))
                try:
                    async for message in stream:
                        transcript.extend(_simplify(message))
                        if on_message is not None:
                            try:
                                on_message(transcript)
                            except Exception:  # noqa: BLE001 - observation must never break the session
                                log.exception("agent_on_message_failed")
                        if isinstance(message, AssistantMessage):
                            if meter.add(message) and on_cost is not None:
                                try:
                                    on_cost(max(meter.total, proxy.cost_usd))
                                except Exception:  # noqa: BLE001
                                    log.exception("agent_on_cost_failed")
                            texts = [b.text for b in message.content if isinstance(b, TextBlock) and b.text]
                            if texts:
                                state["last_text"] = "\n".join(texts)
                        elif isinstance(message, ResultMessage):
                            state["result"] = message
                finally:
                    await stream.aclose()

            log.info("agent_started", mode=mode, sandbox=getattr(sandbox, "id", None), model=options.model,
                     max_turns=max_turns, max_budget_usd=max_budget_usd, timeout_s=timeout_s, jailed=jailed)
            session = asyncio.ensure_future(consume())

            def over_limit(reason: str) -> None:
                stopped.append(reason)
                _end(sandbox, jailed)
                session.cancel()

            watcher = asyncio.ensure_future(sandbox.watch_disk(over_limit)) if hasattr(sandbox, "watch_disk") else None
            try:
                # shield: a timeout or a cancel from outside (cancel, guardian, conductor) must reach us
                # before the SDK, whose own close gives the CLI up to 10 s in which it could still act.
                await asyncio.wait_for(asyncio.shield(session), timeout_s)
            except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
                current = asyncio.current_task()
                if stopped and isinstance(exc, asyncio.CancelledError) and not (current and current.cancelling()):
                    try:
                        await session
                    except BaseException:  # noqa: BLE001 - it was stopped on purpose
                        pass
                    meter.total = max(meter.total, proxy.cost_usd)
                    return _logged(fail(f"the agent was stopped: {stopped[0]}"), mode)
                killed = _end(sandbox, jailed)
                session.cancel()
                try:
                    await session
                except BaseException:  # noqa: BLE001 - the session is being ended
                    pass
                meter.total = max(meter.total, proxy.cost_usd)
                log.info("agent_session_ended", sandbox=getattr(sandbox, "id", None), processes_killed=killed,
                         reason="timeout" if isinstance(exc, asyncio.TimeoutError) else "cancelled")
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return _logged(fail(f"agent timed out after {timeout_s:g}s"), mode)
            except Exception as exc:  # noqa: BLE001 - any SDK/CLI failure is a failed run, not a crash
                meter.total = max(meter.total, proxy.cost_usd)
                if stopped:
                    return _logged(fail(f"the agent was stopped: {stopped[0]}"), mode)
                detail = f"{type(exc).__name__}: {exc}"
                res = state["result"]
                if res is not None and res.is_error:
                    detail = _result_error(res) + f" ({detail})"
                if proxy.refused:
                    detail = f"omoi's model proxy refused further calls: {proxy.refused[-1]} ({detail})"
                tail = "\n".join(stderr_tail)
                return _logged(fail(detail + (f"\nCLI stderr:\n{tail}" if tail else "")), mode)
            finally:
                if watcher is not None:
                    watcher.cancel()
                _end(sandbox, jailed)  # nothing the session started outlives it

            meter.total = max(meter.total, proxy.cost_usd)
            res = state["result"]
            if res is None:
                return _logged(fail("the agent ended without a result message"), mode)
            if res.is_error or res.subtype != "success":
                why = _result_error(res)
                if proxy.refused:
                    why = f"omoi's model proxy refused further calls: {proxy.refused[-1]}; {why}"
                return _logged(fail(why), mode)
            return _logged(AgentResult(
                ok=True, text=res.result or state["last_text"], num_turns=res.num_turns,
                cost_usd=max(float(res.total_cost_usd or 0), proxy.cost_usd), duration_s=time.monotonic() - started,
                transcript=transcript, session_id=res.session_id, subtype=res.subtype,
                permission_denials=list(res.permission_denials or []), usage=res.usage,
            ), mode)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001
        return _logged(fail(f"agent failed: {type(exc).__name__}: {exc}"), mode)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@asynccontextmanager
async def _proxy(settings: Any, sandbox: Any, jailed: bool, limits: dict):
    """The model proxy for one session: the web process's, with the session in the database (a remote
    sandbox); on the sandbox's socket (jailed); or on loopback TCP (unconfined)."""
    from app.agent import model_proxy

    if getattr(sandbox, "remote_agent", False):
        async with model_proxy.remote_session(settings, label=f"sandbox {sandbox.id}", **limits) as session:
            yield session, settings.resolved_public_url() + model_proxy.PREFIX
    elif jailed:
        async with model_proxy.serve_unix(settings, sandbox.model_socket(), uid=sandbox.jail.uid, **limits) as proxy:
            yield proxy, f"http://127.0.0.1:{PROXY_PORT}"
    else:
        async with model_proxy.serve_tcp(settings, **limits) as (proxy, url):
            yield proxy, url


def _end(sandbox: Any, jailed: bool) -> int:
    """Hard-stop the agent and everything it started (a remote agent: its transport's close ends it)."""
    if getattr(sandbox, "remote_agent", False):
        return 0
    if jailed:
        return sandbox.kill_agent()
    return kill_processes_in(sandbox.workdir)


def kill_processes_in(workdir: str) -> int:
    """SIGKILL every process of ours whose working directory is `workdir` or below it (the CLI runs
    with cwd=workdir; its commands start there). Linux /proc; returns how many were signalled."""
    import signal

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


class CostMeter:
    """The session's cost so far from the assistant messages' usage (one API response can arrive as
    several messages sharing a message id and its usage: counted once)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._seen: set[str] = set()

    def add(self, message: Any) -> bool:
        usage, mid = getattr(message, "usage", None), getattr(message, "message_id", None)
        if not usage or (mid and mid in self._seen):
            return False
        if mid:
            self._seen.add(mid)
        from app.llm.pricing import Usage, cost_usd

        self.total += float(cost_usd(getattr(message, "model", "") or "", Usage.of(usage)))
        return True


REDIRECT_PREFIX = "omoi-redirect:"


def _redirect_hook(redirects: Any):
    """A PostToolUse hook that hands the model a pending supervisor message with the tool result."""

    async def hook(hook_input: Any, tool_use_id: Any, context: Any) -> dict:
        try:
            message = redirects()
        except Exception:  # noqa: BLE001 - supervision must never break the session
            log.exception("agent_redirect_failed")
            return {}
        if not message:
            return {}
        log.info("agent_redirected")
        return {"hookSpecificOutput": {"hookEventName": "PostToolUse", "additionalContext": (
            f"{REDIRECT_PREFIX} A message from omoi's supervisor, who watches this session against the task "
            f"and its approved requirements: {message}")}}

    return hook


def _result_error(res: Any) -> str:
    reasons = {
        "error_max_turns": "the agent reached its turn limit",
        "error_max_budget_usd": "the agent reached its budget limit",
        "error_during_execution": "the agent failed during execution",
    }
    head = reasons.get(res.subtype) or ("the agent run failed" if res.is_error or res.subtype == "success"
                                        else f"the agent ended with {res.subtype}")
    details = []
    if res.api_error_status:
        details.append(f"API error status {res.api_error_status}")
    if res.errors:
        details.append("; ".join(str(e) for e in res.errors)[:2000])
    elif res.is_error and res.result:
        details.append(str(res.result)[:2000])
    return head + (": " + "; ".join(details) if details else "")


def _logged(result: AgentResult, mode: str) -> AgentResult:
    log.info("agent_finished", mode=mode, ok=result.ok, num_turns=result.num_turns, cost_usd=result.cost_usd,
             duration_s=round(result.duration_s, 3), error=result.error, subtype=result.subtype)
    return result


__all__ = ["run_agent", "AgentResult", "MODE_TOOLS", "agent_env", "bundled_cli"]
