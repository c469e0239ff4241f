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

Containment (the boundary): the Claude Code CLI itself runs inside the sandbox - how it is started
there, reaches the model and is stopped is app/agent/isolation.py (the jail launcher, the Daytona
transport, or the unsafe unconfined opt-in); the stream-json control protocol (and with it in-process
MCP tools and hooks) passes through stdin/stdout. The CLI holds no credential: its `ANTHROPIC_API_KEY`
is a per-session token of omoi's model proxy (app/agent/model_proxy.py), which adds the real key,
enforces the session's budget and records usage. A session that ends, times out or is cancelled is
hard-stopped with everything it started. The work dir's disk use is watched; over the limit, the
session is stopped.

Supervision hooks (all optional, used by app/execution/task_runner.py):
- `on_message(transcript)` after every message (the guardian reads the trajectory; the transcript's
  shape is app/agent/transcript.py);
- `on_cost(dollars)` with the session's running cost, estimated from each assistant message's
  usage, so a session that is stopped before its result message is still paid for;
- `redirects()` returning a pending supervisor message (or None): it is delivered into the running
  session through a PostToolUse hook (app/agent/hooks.py), i.e. the model reads it with the next
  tool result, without stopping the session;
- `extra_tools`: in-process MCP tools (claude_agent_sdk `@tool`) offered as `mcp__omoi__<name>`,
  e.g. app/execution/discovery.py's `report_discovery`, available in every mode.

Never raises for an agent failure: the result says ok=False and why.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from app.agent import isolation
from app.agent.hooks import redirect_hook
from app.agent.transcript import CostMeter, simplify
from app.observability.logs import get_logger, redact
from app.text.rendering import Reason, reason, render_line

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



def mode_instructions(mode: str) -> str:
    """What the system prompt adds for a mode (templates/prompts/agent_mode.j2)."""
    return render_line("prompts/agent_mode.j2", mode=mode)


_STDERR_LINES = 40


@dataclass
class AgentResult:
    ok: bool
    text: str = ""
    num_turns: int = 0
    cost_usd: float = 0.0
    duration_s: float = 0.0
    error: Reason | None = None  # why it failed (templates/reasons/agent/)
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

    def fail(error: Reason) -> AgentResult:
        res = state["result"]
        return AgentResult(
            ok=False, text=(res.result if res is not None and res.result else state["last_text"]),
            num_turns=res.num_turns if res is not None else sum(1 for t in transcript if t.get("type") == "tool_use"),
            cost_usd=float(res.total_cost_usd or 0) if res is not None else meter.total,
            duration_s=time.monotonic() - started, error=error.map_text(lambda t: redact(t)[:4000]), transcript=transcript,
            session_id=res.session_id if res is not None else None, subtype=res.subtype if res is not None else None,
            permission_denials=list(getattr(res, "permission_denials", None) or []) if res is not None else [],
            usage=res.usage if res is not None else None,
        )

    if mode not in MODE_TOOLS:
        return fail(reason("agent/unknown_mode", mode=repr(mode)))
    unfit = isolation.refusal(sandbox)
    if unfit:
        return fail(unfit)
    remote = bool(getattr(sandbox, "remote_agent", False))  # Daytona: the CLI runs in the remote sandbox
    jailed = bool(getattr(sandbox, "use_bwrap", False))
    workdir, cwd = sandbox.workdir, sandbox.agent_cwd
    if not _secret(getattr(settings, "anthropic_api_key", None)):
        return fail(reason("agent/no_api_key"))

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

            hooks = {"PostToolUse": [HookMatcher(hooks=[redirect_hook(redirects)])]}
    except Exception as exc:  # noqa: BLE001
        return fail(reason("agent/setup_failed", error=f"{type(exc).__name__}: {exc}"))

    limits = {"max_usd": max_budget_usd, "max_tokens_per_request": getattr(settings, "agent_max_tokens_per_request", None),
              "max_tokens_total": getattr(settings, "agent_max_session_tokens", None)}
    tmp = tempfile.mkdtemp(prefix="omoi-agent-")
    stopped: list[Reason] = []
    try:
        async with isolation.proxy_for(settings, sandbox, jailed, limits) as (proxy, base_url):
            env, cli, transport = isolation.start(settings, sandbox, token=proxy.token, base_url=base_url, tmp=tmp,
                                                  remote=remote, jailed=jailed)
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
                               "append": system_prompt or mode_instructions(mode)},
                stderr=lambda line: stderr_tail.append(line),
                mcp_servers=mcp_servers,
                hooks=hooks,
            )

            async def consume() -> None:
                stream = query(prompt=prompt, options=options, transport=None if transport is None else
                               transport(prompt, options, env, lambda line: stderr_tail.append(line)))
                try:
                    async for message in stream:
                        transcript.extend(simplify(message))
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

            def over_limit(why: Reason) -> None:
                stopped.append(why)
                isolation.end(sandbox, jailed)
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
                    return _logged(fail(reason("agent/stopped", cause=stopped[0])), mode)
                killed = isolation.end(sandbox, jailed)
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
                return _logged(fail(reason("agent/timed_out", seconds=timeout_s)), mode)
            except Exception as exc:  # noqa: BLE001 - any SDK/CLI failure is a failed run, not a crash
                meter.total = max(meter.total, proxy.cost_usd)
                if stopped:
                    return _logged(fail(reason("agent/stopped", cause=stopped[0])), mode)
                detail = reason("agent/exception", error=f"{type(exc).__name__}: {exc}")
                res = state["result"]
                if res is not None and res.is_error:
                    detail = reason("agent/with_detail", cause=_result_error(res), detail=detail)
                if proxy.refused:
                    detail = reason("agent/proxy_refused", refusal=proxy.refused[-1], detail=detail, cause=None)
                tail = "\n".join(stderr_tail)
                return _logged(fail(reason("agent/with_stderr", cause=detail, stderr=tail) if tail else detail), mode)
            finally:
                if watcher is not None:
                    watcher.cancel()
                isolation.end(sandbox, jailed)  # nothing the session started outlives it

            meter.total = max(meter.total, proxy.cost_usd)
            res = state["result"]
            if res is None:
                return _logged(fail(reason("agent/no_result")), mode)
            if res.is_error or res.subtype != "success":
                why = _result_error(res)
                if proxy.refused:
                    why = reason("agent/proxy_refused", refusal=proxy.refused[-1], detail=None, cause=why)
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
        return _logged(fail(reason("agent/crashed", error=f"{type(exc).__name__}: {exc}")), mode)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _result_error(res: Any) -> Reason:
    """The SDK's result message as a reason (templates/reasons/agent/result.md.j2)."""
    details = None
    if res.errors:
        details = "; ".join(str(e) for e in res.errors)[:2000]
    elif res.is_error and res.result:
        details = str(res.result)[:2000]
    return reason("agent/result", subtype=res.subtype, is_error=bool(res.is_error),
                  api_status=res.api_error_status or None, details=details)


def _logged(result: AgentResult, mode: str) -> AgentResult:
    log.info("agent_finished", mode=mode, ok=result.ok, num_turns=result.num_turns, cost_usd=result.cost_usd,
             duration_s=round(result.duration_s, 3), error=result.error.to_json() if result.error else None,
             subtype=result.subtype)
    return result


__all__ = ["run_agent", "AgentResult", "MODE_TOOLS"]
