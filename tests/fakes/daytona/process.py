"""The toolbox's process API: ``process/execute`` and sessions, modelled on the daemon (one shell
per session, commands run one after another in it, output labelled line by line into a log,
async commands fed through a FIFO, logs followed over a websocket)."""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import posixpath
import shlex
import stat
import subprocess
import time
import uuid

import aiohttp
from aiohttp import web

from .common import (HOME, INPUT_PIPE_WAIT_S, LOG_POLL_S, REC, STDERR_PREFIX, STDOUT_PREFIX, _absolute, _HttpError,
                     _killpg)
from .sandbox import FakeSandbox, FakeSession, FakeSessionCommand


class ProcessToolbox:
    """FakeDaytona's ``/toolbox/{id}/work-dir``, ``process/execute`` and ``process/session/...`` handlers."""

    # -- toolbox: process ---------------------------------------------------------------------

    async def _work_dir(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"dir": HOME})

    async def _execute(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _HttpError(400, "command is required", "INVALID_REQUEST_BODY")
        sb.execs.append(body)
        cwd = posixpath.normpath(_absolute(body.get("cwd")))
        if not self._is_dir(sb, cwd):
            # What the daemon answers when exec.Cmd cannot start in the directory.
            return web.json_response({"exitCode": -1, "result": f"chdir {cwd}: no such file or directory"})
        proc = await self._spawn(sb, [self._shell(), "-c", command], cwd=cwd, env=sb.env(body.get("envs")))
        timeout = body.get("timeout") or None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            _killpg(proc)
            await proc.wait()
            raise _HttpError(408, f"Command execution timed out after {timeout} seconds. The timeout can be increased"
                                  " by adjusting the timeout parameter in the request.", "PROCESS_EXECUTION_TIMEOUT")
        code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else -1
        return web.json_response({"exitCode": code, "result": out.decode(errors="replace")})

    def _is_dir(self, sb: FakeSandbox, inside: str) -> bool:
        try:
            return self._jail(sb).resolve(inside).is_dir()
        except _HttpError:
            return True  # a read-only system mount: let `cd` decide

    # -- toolbox: sessions --------------------------------------------------------------------

    def _session(self, request: web.Request) -> tuple[FakeSandbox, FakeSession]:
        sb = self._sandbox(request)
        session = sb.sessions.get(request.match_info["sid"])
        if session is None or session.deleted:
            raise _HttpError(404, "session not found", "PROCESS_NOT_FOUND")
        return sb, session

    def _command(self, request: web.Request) -> tuple[FakeSandbox, FakeSession, FakeSessionCommand]:
        sb, session = self._session(request)
        cmd = session.commands.get(request.match_info["cid"])
        if cmd is None:
            raise _HttpError(404, "command not found", "PROCESS_NOT_FOUND")
        self._refresh_exit(sb, cmd)
        return sb, session, cmd

    def _refresh_exit(self, sb: FakeSandbox, cmd: FakeSessionCommand) -> int | None:
        """The exit code once the wrapper published it (`exit_code` appears after both streams drained)."""
        if cmd.exit_code is None:
            raw = self._read_inside(sb, f"{cmd.dir}/exit_code")
            if raw is not None and raw.strip().lstrip(b"-").isdigit():
                cmd.exit_code = int(raw.strip())
        return cmd.exit_code

    def _session_dto(self, sb: FakeSandbox, session: FakeSession) -> dict:
        for cmd in session.commands.values():
            self._refresh_exit(sb, cmd)
        return {"sessionId": session.id, "commands": [c.dto() for c in session.commands.values()]}

    async def _session_create(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        sid = (request[REC].json or {}).get("sessionId")
        if not isinstance(sid, str) or not sid or "/" in sid or sid in (".", ".."):
            raise _HttpError(400, "sessionId is required", "INVALID_REQUEST_BODY")
        old = sb.sessions.get(sid)
        if old is not None and not old.deleted:
            raise _HttpError(409, "session already exists", "CONFLICT")
        proc = await self._spawn(sb, [self._shell()], cwd=HOME, env=sb.env(), stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        session = FakeSession(sid, proc)
        self._mkdir_inside(sb, session.dir)
        sb.sessions[sid] = session
        return web.Response(status=201)

    async def _session_list(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        return web.json_response([self._session_dto(sb, s) for s in sb.sessions.values() if not s.deleted])

    async def _session_get(self, request: web.Request) -> web.Response:
        sb, session = self._session(request)
        return web.json_response(self._session_dto(sb, session))

    async def _session_delete(self, request: web.Request) -> web.Response:
        _, session = self._session(request)
        session.deleted = True
        # Like the daemon: the shell has its own process group; signal all of it.
        _killpg(session.proc)
        await session.proc.wait()
        return web.Response(status=204)

    async def _session_exec(self, request: web.Request) -> web.Response:
        sb, session = self._session(request)
        body = request[REC].json or {}
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _HttpError(400, "command cannot be empty", "INVALID_REQUEST_BODY")
        if not session.shell_alive:
            raise _HttpError(410, "session is no longer accepting commands", "SESSION_ENDED")
        run_async = bool(body.get("runAsync") or body.get("async"))
        cid = str(uuid.uuid4())
        cmd = FakeSessionCommand(cid, command, f"{session.dir}/{cid}", run_async, bool(body.get("suppressInputEcho")))
        self._mkdir_inside(sb, cmd.dir)
        self._write_inside(sb, f"{cmd.dir}/cmd.sh", command.encode())
        self._write_inside(sb, f"{cmd.dir}/output.log", b"")
        session.commands[cid] = cmd
        assert session.proc.stdin is not None
        try:
            session.proc.stdin.write(_wrapper(cmd.dir, run_async).encode())
            await session.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise _HttpError(410, "session is no longer accepting commands", "SESSION_ENDED") from None
        if run_async:
            return web.json_response({"cmdId": cid}, status=202)
        while self._refresh_exit(sb, cmd) is None:
            if session.deleted or sb.deleted:
                raise _HttpError(400, "session cancelled")
            if not session.shell_alive and self._refresh_exit(sb, cmd) is None:
                # the shell was on its way out (an `exit` just before): the command never ran
                raise _HttpError(410, "session is no longer accepting commands", "SESSION_ENDED")
            await asyncio.sleep(LOG_POLL_S)
        raw = self._read_inside(sb, f"{cmd.dir}/output.log") or b""
        out, err = demux(raw)
        return web.json_response({"cmdId": cid, "output": raw.decode(errors="replace"),
                                  "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
                                  "exitCode": cmd.exit_code})

    async def _command_get(self, request: web.Request) -> web.Response:
        _, _, cmd = self._command(request)
        return web.json_response(cmd.dto())

    async def _command_logs(self, request: web.Request) -> web.StreamResponse:
        sb, session, cmd = self._command(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._stream_logs(request, sb, session, cmd, follow=request.query.get("follow") == "true")
        raw = self._read_inside(sb, f"{cmd.dir}/output.log")
        if raw is None:
            raise _HttpError(404, "log file not found", "FILE_NOT_FOUND")
        if "application/json" not in request.headers.get("Accept", ""):
            return web.Response(body=raw, content_type="text/plain")
        out, err = demux(raw)
        return web.json_response({"output": raw.decode(errors="replace"), "stdout": out.decode(errors="replace"),
                                  "stderr": err.decode(errors="replace")})

    async def _stream_logs(self, request: web.Request, sb: FakeSandbox, session: FakeSession, cmd: FakeSessionCommand,
                           *, follow: bool) -> web.WebSocketResponse:
        """The labelled log as binary frames (what std_demux_stream_aio parses); with follow, new
        output as it is written, until the command ended (then everything left) or the session went."""
        try:
            fd = os.open(self._jail(sb).resolve(f"{cmd.dir}/output.log"), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise _HttpError(404, "log file not found", "FILE_NOT_FOUND") from None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client = asyncio.create_task(_drain_client(ws))
        try:
            with os.fdopen(fd, "rb") as fh:
                while not ws.closed:
                    chunk = fh.read(64 * 1024)
                    if chunk:
                        await ws.send_bytes(chunk)
                        continue
                    if not follow or client.done() or session.deleted or sb.deleted:
                        break
                    if self._refresh_exit(sb, cmd) is not None:
                        rest = fh.read()
                        if rest:
                            await ws.send_bytes(rest)
                        break
                    await asyncio.sleep(LOG_POLL_S)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            await ws.close(code=aiohttp.WSCloseCode.OK)
            client.cancel()
        return ws

    async def _command_input(self, request: web.Request) -> web.Response:
        sb, session, cmd = self._command(request)
        data = (request[REC].json or {}).get("data")
        if not isinstance(data, str):
            raise _HttpError(400, "data is required", "INVALID_REQUEST_BODY")
        if not session.shell_alive:
            raise _HttpError(410, "session process has exited", "SESSION_ENDED")
        if not data.endswith("\n"):
            data += "\n"  # the daemon adds it, "for commands like `read`"
        fd = await self._open_input(sb, cmd)
        try:
            await asyncio.to_thread(_write_all, fd, data.encode())
        finally:
            os.close(fd)
        cmd.inputs.append(data)
        if not cmd.suppress_input_echo:
            self._append_inside(sb, f"{cmd.dir}/output.log", STDOUT_PREFIX + data.encode())
        return web.Response(status=204)

    async def _open_input(self, sb: FakeSandbox, cmd: FakeSessionCommand) -> int:
        """The command's stdin FIFO, opened for writing (the shell creates it when the command starts)."""
        deadline = time.monotonic() + INPUT_PIPE_WAIT_S
        while True:
            if self._refresh_exit(sb, cmd) is not None:
                raise _HttpError(410, f"command has already completed with exit code {cmd.exit_code}",
                                 "COMMAND_ALREADY_COMPLETED")
            try:
                path = self._jail(sb).resolve(f"{cmd.dir}/input.pipe", follow_last=False)
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
                    return fd
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nothing reads the FIFO (yet)
                    raise _HttpError(500, f"failed to open input pipe: {exc}") from None
            if time.monotonic() > deadline:
                raise _HttpError(500, "failed to open input pipe: the command is not reading input")
            await asyncio.sleep(LOG_POLL_S)


def demux(log_bytes: bytes) -> tuple[bytes, bytes]:
    """Split a labelled session log into stdout and stderr (the daemon's DemuxLogBytes)."""
    out, err = bytearray(), bytearray()
    current: bytearray | None = None
    i = 0
    while i < len(log_bytes):
        head = log_bytes[i:i + 3]
        if head == STDOUT_PREFIX or head == STDERR_PREFIX:
            current = out if head == STDOUT_PREFIX else err
            i += 3
            continue
        j = min((k for k in (log_bytes.find(STDOUT_PREFIX, i), log_bytes.find(STDERR_PREFIX, i)) if k != -1),
                default=len(log_bytes))
        if current is not None:
            current += log_bytes[i:j]
        i = j
    return bytes(out), bytes(err)


def _wrapper(cmd_dir: str, run_async: bool) -> str:
    """What is written to a session's shell for one command (modelled on the daemon's wrapper):
    the command is sourced, so `cd`/`export` persist in the session; its stdout and stderr pass
    through FIFOs whose readers label each line into output.log; an async command reads a FIFO
    opened read-write (never EOF) that `.../input` writes to; the exit code is published (renamed
    into place) only after both streams drained. An `exit` in the command ends the shell, so an
    EXIT trap publishes its code too."""
    d = shlex.quote(cmd_dir)
    stdin = '<> "$__dtn_d/input.pipe"' if run_async else "< /dev/null"
    return f"""{{
__dtn_d={d}
rm -f "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"
if mkfifo "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"; then
  __dtn_label() {{ while IFS= read -r __dtn_l || [ -n "$__dtn_l" ]; do printf "$1%s\\n" "$__dtn_l"; done; }}
  __dtn_label '\\001\\001\\001' < "$__dtn_d/stdout.pipe" >> "$__dtn_d/output.log" & __dtn_r1=$!
  __dtn_label '\\002\\002\\002' < "$__dtn_d/stderr.pipe" >> "$__dtn_d/output.log" & __dtn_r2=$!
  __dtn_done() {{
    wait "$__dtn_r1" "$__dtn_r2"
    printf '%s\\n' "$1" > "$__dtn_d/exit_code.tmp" && mv -f "$__dtn_d/exit_code.tmp" "$__dtn_d/exit_code"
    rm -f "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"
  }}
  trap '__dtn_e=$?; exec >/dev/null 2>&1; __dtn_done "$__dtn_e"' EXIT
  {{ . "$__dtn_d/cmd.sh"; }} {stdin} > "$__dtn_d/stdout.pipe" 2> "$__dtn_d/stderr.pipe"
  __dtn_done "$?"
  trap - EXIT
else
  printf '1\\n' > "$__dtn_d/exit_code"
fi
}}
"""


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """Reads (and so answers pings and notices the close of) a log follower."""
    async for _ in ws:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
