"""The agent inside a Daytona sandbox: Claude Code runs there; its stream-json protocol is carried
over Daytona's session-command API by a Claude Agent SDK `Transport`.

- stdin: `send_session_command_input` (echo suppressed), one write per SDK message;
- stdout: the command's log stream (`get_session_command_logs_async`, a websocket), split into lines;
- the process: `execute_session_command(run_async=True)` of `claude <the SDK's own flags>` in the work
  dir, with an environment built from scratch (`env -i`): no credential but the model proxy's
  per-session token, and `ANTHROPIC_BASE_URL` pointing at omoi's public `/model-proxy`;
- ending it: `delete_session` (Daytona kills what the session started); the sandbox is destroyed next.
In-process MCP tools (report_discovery) and hooks keep working: they ride the same control protocol.
"""
from __future__ import annotations

import asyncio
import json
import shlex
import uuid
from collections.abc import AsyncIterator
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions
from claude_agent_sdk._internal.transport import Transport

from app.observability.logs import get_logger

log = get_logger("omoi.sandbox.daytona_agent")

CLI = "claude"  # installed in the sandbox image / snapshot (docs/operations.md)
_EOF = object()


def cli_argv(prompt: Any, options: ClaudeAgentOptions) -> list[str]:
    """The CLI flags the SDK's own subprocess transport would pass (tools, permissions, system prompt...).

    A custom transport gets none of them applied by the SDK, so they are built the same way here."""
    from dataclasses import replace

    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    return SubprocessCLITransport(prompt, replace(options, cli_path=CLI))._build_command()


class DaytonaSessionTransport(Transport):
    """One Claude Code process in a Daytona sandbox, driven through a session command."""

    def __init__(self, sandbox: Any, argv: list[str], env: dict[str, str], cwd: str,
                 stderr: Any = None, home: str | None = None) -> None:
        self._sb = sandbox
        self._argv, self._env, self._cwd, self._home = argv, env, cwd, home
        self._stderr = stderr
        self.session_id = f"omoi-agent-{uuid.uuid4().hex[:12]}"
        self.command_id: str | None = None
        self._lines: asyncio.Queue = asyncio.Queue()
        self._buf = ""
        self._follow: asyncio.Task | None = None
        self._ready = False
        self._closed = False
        self._input_ended = False
        self._results = 0  # result messages seen

    def command(self) -> str:
        env = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(self._env.items()))
        home = f"mkdir -p {shlex.quote(self._home)} && " if self._home else ""
        return f"{home}cd {shlex.quote(self._cwd)} && exec env -i {env} {shlex.join(self._argv)}"

    async def connect(self) -> None:
        from daytona import SessionExecuteRequest

        process = self._sb.process
        await process.create_session(self.session_id)
        resp = await process.execute_session_command(self.session_id, SessionExecuteRequest(
            command=self.command(), run_async=True, suppress_input_echo=True))
        self.command_id = resp.cmd_id
        self._follow = asyncio.ensure_future(self._pump())
        self._ready = True

    async def _pump(self) -> None:
        try:
            await self._sb.process.get_session_command_logs_async(
                self.session_id, self.command_id, self._on_stdout, self._on_stderr)
        except Exception as exc:  # noqa: BLE001 - the stream ended badly: the reader sees the end
            log.warning("agent_log_stream_failed", session=self.session_id, error=type(exc).__name__)
        finally:
            if self._buf.strip():
                self._lines.put_nowait(self._buf)
            self._buf = ""
            self._lines.put_nowait(_EOF)

    def _on_stdout(self, chunk: str) -> None:
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            if line.strip():
                self._lines.put_nowait(line)

    def _on_stderr(self, chunk: str) -> None:
        if self._stderr is not None:
            for line in chunk.splitlines():
                try:
                    self._stderr(line)
                except Exception:  # noqa: BLE001
                    pass

    async def write(self, data: str) -> None:
        if self._closed or self.command_id is None:
            raise ConnectionError("the agent's session in the sandbox has ended")
        await self._sb.process.send_session_command_input(self.session_id, self.command_id, data)

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            line = await self._lines.get()
            if line is _EOF:
                return
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not protocol (a stray print): the SDK would skip it too
            if isinstance(message, dict):
                yield message
                if message.get("type") == "result":
                    self._results += 1
                    if self._input_ended:  # what closing stdin would have done: the CLI ends after its result
                        await self.close()

    async def end_input(self) -> None:
        """The session API cannot close a command's stdin, and Claude Code waits for more input until it
        is closed; so ending input ends the session command once the CLI has given its result (its log
        stream then ends, and with it the messages). The SDK ends input right after the prompt when no
        hook or in-process tool needs the control channel, and after the result otherwise: ending the
        command at once would kill the CLI mid-run in the first case."""
        self._input_ended = True
        if self._results == 0:
            return  # read_messages closes after the result
        if self._follow is not None and not self._follow.done():
            done, _ = await asyncio.wait({self._follow}, timeout=1.0)  # a moment to finish on its own
            if done:
                return
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed, self._ready = True, False
        try:
            await asyncio.wait_for(self._sb.process.delete_session(self.session_id), 30)
        except Exception as exc:  # noqa: BLE001 - the sandbox is destroyed right after anyway
            log.warning("agent_session_delete_failed", session=self.session_id, error=type(exc).__name__)
        if self._follow is not None and not self._follow.done():
            done, _ = await asyncio.wait({self._follow}, timeout=2.0)  # the stream ends with the command
            if not done:
                self._follow.cancel()
                self._lines.put_nowait(_EOF)

    def is_ready(self) -> bool:
        return self._ready


__all__ = ["DaytonaSessionTransport", "cli_argv"]
