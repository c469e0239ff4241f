"""Daytona sandboxes (daytona SDK 0.226.1, AsyncDaytona).

Each `create()` makes an ephemeral sandbox (deleted when it stops; auto-stop after
`sandbox_timeout_seconds` of inactivity, rounded up to minutes) with all network egress
blocked unless `sandbox_network` is on, labelled `app=omoi`, with no env vars of ours.

Getting the code in: the repo is cloned **on the host** (app.sandbox.local.host_clone, token passed
to git as an http.extraHeader through the environment), checked for leftover credentials, tarred and
uploaded. No GitHub token, App key or model key is ever sent to Daytona.

The agent runs inside the sandbox (app/sandbox/daytona_agent.py): `remote_agent` tells app/agent/isolation.py to
drive it through a session-command transport and to give it a database-backed session of the web
process's model proxy (`<public URL>/model-proxy`). The sandbox's network is closed except for that
address (`network_allow_list`: the public URL's host as a /32, or `daytona_network_allow_list`).

Commands go through the daemon's `process/execute`, which returns stdout and stderr combined:
`ExecResult.stdout` holds both and `stderr` is empty. Each command is wrapped in coreutils
`timeout -k 5 <t>`, so a timeout kills it inside the sandbox, not only the HTTP wait.
"""
from __future__ import annotations

import asyncio
import io
import math
import posixpath
import shlex
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from app.observability.logs import get_logger
from app.sandbox.base import (
    NOTES,
    DEFAULT_MAX_OUTPUT_BYTES,
    ExecResult,
    RepoSource,
    SandboxError,
    SetupStep,
    git_diff_args,
    label_slug,
    safe_relpath,
    shell_command,
    split_repo_url,
)
from app.sandbox.clone import host_clone
from app.text.rendering import render_line

log = get_logger("omoi.sandbox.daytona")

TIMEOUT_EXIT_CODES = (124, 137)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    value = getter() if getter else value
    return value or None


class DaytonaSandbox:
    remote_agent = True  # app/agent/isolation.py: the CLI runs in this sandbox, through `agent_transport`

    def __init__(self, *, client: Any, sandbox: Any, workdir: str, base_sha: str, network: bool,
                 max_output_bytes: int | None) -> None:
        self._client = client
        self._sb = sandbox
        self.id = sandbox.id
        self.workdir = workdir
        self.base_sha = base_sha
        self.network = network
        self.max_output_bytes = max_output_bytes
        self.destroyed = False

    def __repr__(self) -> str:
        return f"<DaytonaSandbox {self.id} {self.workdir} network={self.network}>"

    @property
    def agent_cwd(self) -> str:
        return self.workdir

    @property
    def agent_home(self) -> str:
        # Claude Code's config and transcripts: in the sandbox, outside the work tree.
        return posixpath.join(posixpath.dirname(self.workdir), ".omoi-agent-home")

    def agent_transport(self, prompt: Any, options: Any, env: dict[str, str], stderr: Any = None) -> Any:
        """The SDK transport that runs Claude Code in this sandbox (see app/sandbox/daytona_agent.py)."""
        from app.sandbox.daytona_agent import DaytonaSessionTransport, cli_argv  # loads claude_agent_sdk: only here

        self._check_alive()
        argv = cli_argv(prompt, options)
        return DaytonaSessionTransport(self._sb, argv, env, self.workdir, stderr=stderr, home=self.agent_home)

    def _check_alive(self) -> None:
        if self.destroyed:
            raise SandboxError(f"sandbox {self.id} was destroyed")

    def _path(self, rel: str) -> str:
        return posixpath.join(self.workdir, safe_relpath(rel))

    def _resolve_cwd(self, cwd: str | None) -> str:
        if cwd is None:
            return self.workdir
        if cwd.startswith("/"):
            norm = posixpath.normpath(cwd)
            if norm != self.workdir and not norm.startswith(self.workdir + "/"):
                raise SandboxError(f"cwd {cwd!r} is outside the sandbox work dir")
            return norm
        return self._path(cwd)

    async def exec(self, command: str | list[str], *, timeout: float, env: dict | None = None,
                   cwd: str | None = None) -> ExecResult:
        return await self._exec(command, timeout=timeout, env=env, cwd=cwd, limit=self.max_output_bytes)

    async def _exec(self, command: str | list[str], *, timeout: float, env: dict | None, cwd: str | None,
                    limit: int | None, raw_cwd: str | None = None) -> ExecResult:
        from daytona import DaytonaError, DaytonaTimeoutError

        self._check_alive()
        seconds = max(1, math.ceil(timeout))
        wrapped = f"timeout -k 5 {seconds} sh -c {shlex.quote(shell_command(command))}"
        envs = {"LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0", "PYTHONDONTWRITEBYTECODE": "1",
                **{str(k): str(v) for k, v in (env or {}).items()}}
        started = time.monotonic()
        try:
            resp = await self._sb.process.exec(wrapped, cwd=raw_cwd or self._resolve_cwd(cwd), env=envs, timeout=seconds + 30)
        except DaytonaTimeoutError:
            return ExecResult(137, "", render_line(NOTES, part="timed_out", seconds=timeout, killed=False),
                              time.monotonic() - started, timed_out=True)
        except DaytonaError as exc:
            raise SandboxError(f"daytona exec failed: {exc}") from exc
        duration = time.monotonic() - started
        code = resp.exit_code if resp.exit_code is not None else -1
        out = resp.result or ""
        if limit is not None and len(out.encode()) > limit:
            out = out.encode()[:limit].decode(errors="replace") + "\n" + render_line(NOTES, part="truncated", limit=limit)
        timed_out = code in TIMEOUT_EXIT_CODES and duration >= seconds - 0.5
        stderr = render_line(NOTES, part="timed_out", seconds=timeout, killed=True) if timed_out else ""
        return ExecResult(code, out, stderr, duration, timed_out)

    async def run_setup(self, commands: list[str], *, allow: list[str], timeout: float) -> list[Any]:
        """The repository's setup commands, in the sandbox. Its network is Daytona's allow-list (CIDRs:
        omoi's public URL, plus `daytona_network_allow_list`): host names in `allow` cannot be enforced
        here, so package registries must be reachable through that list or a snapshot with them baked in."""
        steps = []
        for command in commands:
            res = await self.exec(command, timeout=timeout)
            steps.append(SetupStep(command, res, []))
            if not res.ok:
                break
        return steps

    async def upload(self, files: dict[str, bytes]) -> None:
        from daytona import DaytonaError, FileUpload

        self._check_alive()
        uploads = [FileUpload(source=bytes(data), destination=self._path(rel)) for rel, data in files.items()]
        if not uploads:
            return
        try:
            await self._sb.fs.upload_files(uploads)
        except DaytonaError as exc:
            raise SandboxError(f"daytona upload failed: {exc}") from exc

    async def _download_abs(self, path: str) -> bytes:
        from daytona import DaytonaError

        try:
            data = await self._sb.fs.download_file(path)
        except DaytonaError as exc:
            raise SandboxError(f"daytona download of {path} failed: {exc}") from exc
        return data if isinstance(data, bytes) else bytes(data or b"")

    async def download(self, path: str) -> bytes:
        self._check_alive()
        return await self._download_abs(self._path(path))

    async def diff(self) -> str:
        # Written to a file: the daemon mixes stderr into the command output.
        tmp = f"/tmp/omoi-diff-{uuid.uuid4().hex}.patch"
        script = f"git add -A && {shlex.join(git_diff_args(self.base_sha))} > {tmp}"
        res = await self._exec(script, timeout=300, env=None, cwd=None, limit=None)
        if not res.ok:
            raise SandboxError(f"git diff failed ({res.exit_code}): {res.stdout[-2000:]}")
        data = await self._download_abs(tmp)
        await self._exec(["rm", "-f", tmp], timeout=30, env=None, cwd=None, limit=None)
        return data.decode("utf-8", errors="replace")

    async def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        try:
            await self._sb.delete()
            log.info("sandbox_destroyed", sandbox_id=self.id, provider="daytona")
        except Exception as exc:  # noqa: BLE001 - ephemeral + auto-stop reclaim it anyway
            log.warning("sandbox_delete_failed", sandbox_id=self.id, error=str(exc))
        finally:
            try:
                await self._client.close()
            except Exception:  # noqa: BLE001
                pass


class DaytonaSandboxProvider:
    def __init__(self, settings: Any = None, *, api_key: str | None = None, api_url: str | None = None,
                 target: str | None = None, snapshot: str | None = None, network: bool | None = None,
                 timeout_s: float | None = None, create_timeout_s: float = 120,
                 max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.api_key = api_key or _secret(getattr(settings, "daytona_api_key", None))
        self.api_url = api_url or getattr(settings, "daytona_api_url", None) or None
        self.target = target or getattr(settings, "daytona_target", None) or None
        self.snapshot = snapshot or getattr(settings, "daytona_snapshot", None) or None
        self.network = bool(getattr(settings, "sandbox_network", False)) if network is None else network
        self.timeout_s = float(timeout_s or getattr(settings, "sandbox_timeout_seconds", None) or 3600)
        self.create_timeout_s = create_timeout_s
        self.max_output_bytes = max_output_bytes
        self.allow_list = proxy_allow_list(settings)
        self.create_attempts = int(getattr(settings, "daytona_create_attempts", 5) or 5)
        self.create_backoff_s = float(getattr(settings, "daytona_create_backoff_seconds", 1.0) or 1.0)

    def _client(self) -> Any:
        from daytona import AsyncDaytona, DaytonaConfig

        if not self.api_key:
            raise SandboxError("Daytona is not configured: set OMOI_DAYTONA_API_KEY (and OMOI_DAYTONA_API_URL)")
        kwargs: dict[str, Any] = {"api_key": self.api_key}
        if self.api_url:
            kwargs["api_url"] = self.api_url
        if self.target:
            kwargs["target"] = self.target
        return AsyncDaytona(DaytonaConfig(**kwargs))

    def create_params(self, label: str) -> Any:
        from daytona import CreateSandboxFromSnapshotParams

        return CreateSandboxFromSnapshotParams(
            language="python",
            snapshot=self.snapshot,
            labels={"app": "omoi", "omoi-label": label_slug(label)},
            env_vars={},
            auto_stop_interval=max(1, math.ceil(self.timeout_s / 60)),
            ephemeral=True,  # auto_delete_interval=0: deleted as soon as it stops
            # Closed but for omoi's model proxy, unless the operator opened it (sandbox_network).
            network_block_all=False if self.network else not self.allow_list,
            network_allow_list=None if self.network else (self.allow_list or None),
        )

    async def create(self, *, repo_url: str, ref: str, label: str) -> DaytonaSandbox:
        from daytona import DaytonaError

        source = split_repo_url(repo_url)
        client = self._client()
        sb = None
        try:
            try:
                sb = await self._create_with_retries(client, label)
                root = (await sb.get_work_dir()).rstrip("/") or "/"
            except DaytonaError as exc:
                raise SandboxError(f"daytona sandbox creation failed: {exc}") from exc
            workdir = posixpath.join(root, "repo")
            sandbox = DaytonaSandbox(client=client, sandbox=sb, workdir=workdir, base_sha="HEAD",
                                     network=self.network, max_output_bytes=self.max_output_bytes)
            sandbox.base_sha = await self._clone_on_host(sandbox, source, ref)
            await self._check_credentials(sandbox, source)
        except BaseException:
            if sb is not None:
                try:
                    await sb.delete()
                except Exception:  # noqa: BLE001
                    log.warning("sandbox_delete_failed", sandbox_id=getattr(sb, "id", None))
            await client.close()
            raise
        log.info("sandbox_created", sandbox_id=sandbox.id, provider="daytona", label=label, repo=source.url, ref=ref,
                 sha=sandbox.base_sha, network=self.network)
        return sandbox

    async def _create_with_retries(self, client: Any, label: str) -> Any:
        """Daytona answers 429 (rate limit) and 5xx while busy: retried with exponential backoff (tenacity);
        the last failure propagates and ends the attempt visibly."""
        from daytona import DaytonaError
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

        def transient(exc: BaseException) -> bool:
            status = getattr(exc, "status_code", None)
            text = str(exc)
            return isinstance(exc, DaytonaError) and (status in (429, 500, 502, 503, 504) or any(
                f" {code}" in text or text.startswith(str(code)) for code in (429, 500, 502, 503, 504)))

        async for attempt in AsyncRetrying(retry=retry_if_exception(transient), reraise=True,
                                           stop=stop_after_attempt(self.create_attempts),
                                           wait=wait_exponential(multiplier=self.create_backoff_s, max=30)):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    log.warning("daytona_create_retry", attempt=attempt.retry_state.attempt_number, label=label)
                return await client.create(self.create_params(label), timeout=self.create_timeout_s)
        raise SandboxError("daytona sandbox creation failed")  # unreachable: tenacity re-raises

    async def reap(self, live_labels: set[str], *, min_age_s: float) -> list[str]:
        """Delete omoi's sandboxes (label app=omoi) older than `min_age_s` whose `omoi-label` no running
        task owns (a worker died between create and delete). Returns the deleted sandbox ids."""
        from datetime import datetime, timezone

        from daytona import ListSandboxesQuery

        client = self._client()
        deleted: list[str] = []
        try:
            now = datetime.now(timezone.utc)
            items = [sb async for sb in client.list(ListSandboxesQuery(labels={"app": "omoi"}))]
            for sb in items:
                labels = getattr(sb, "labels", None) or {}
                created = getattr(sb, "created_at", None)
                try:
                    age = (now - datetime.fromisoformat(str(created).replace("Z", "+00:00"))).total_seconds()
                except ValueError:
                    age = min_age_s + 1  # no creation time: judged by its label alone
                if labels.get("app") != "omoi" or age < min_age_s or labels.get("omoi-label") in live_labels:
                    continue
                try:
                    await client.delete(sb)
                    deleted.append(sb.id)
                except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                    log.warning("daytona_reap_failed", sandbox_id=getattr(sb, "id", None), error=str(exc))
        finally:
            await client.close()
        if deleted:
            log.warning("daytona_orphans_deleted", count=len(deleted), ids=deleted)
        return deleted

    async def _clone_on_host(self, sandbox: DaytonaSandbox, source: RepoSource, ref: str) -> str:
        with tempfile.TemporaryDirectory(prefix="omoi-dt-clone-") as tmp:
            home = Path(tmp) / "home"
            home.mkdir()
            sha = await asyncio.to_thread(host_clone, source, ref, Path(tmp) / "repo", home)
            archive = await asyncio.to_thread(_tar_dir, Path(tmp) / "repo")
        remote = f"/tmp/omoi-repo-{uuid.uuid4().hex}.tar.gz"
        from daytona import DaytonaError, FileUpload

        try:
            await sandbox._sb.fs.upload_files([FileUpload(source=archive, destination=remote)])
        except DaytonaError as exc:
            raise SandboxError(f"daytona upload of the repository failed: {exc}") from exc
        unpack = (f"mkdir -p {shlex.quote(sandbox.workdir)} && tar -xzf {remote} -C {shlex.quote(sandbox.workdir)}"
                  f" && rm -f {remote}")
        res = await sandbox._exec(unpack, timeout=600, env=None, cwd=None, limit=None, raw_cwd="/")
        if not res.ok:
            raise SandboxError(f"unpacking the repository in the sandbox failed: {res.stdout[-2000:]}")
        return sha

    async def _check_credentials(self, sandbox: DaytonaSandbox, source: RepoSource) -> None:
        config = (await sandbox._download_abs(posixpath.join(sandbox.workdir, ".git/config"))).decode(errors="replace")
        if any(s in config for s in source.secrets()) or "extraheader" in config.lower():
            raise SandboxError("credentials found in .git/config after clone")


def proxy_allow_list(settings: Any) -> str:
    """The CIDRs a sandbox may reach: `daytona_network_allow_list`, else the public URL's addresses (/32)."""
    explicit = str(getattr(settings, "daytona_network_allow_list", "") or "").strip()
    if explicit or settings is None or not hasattr(settings, "resolved_public_url"):
        return explicit
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(settings.resolved_public_url())
    try:
        infos = socket.getaddrinfo(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except OSError:
        return ""
    cidrs = []
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        cidr = f"{ip}/{32 if ip.version == 4 else 128}"
        if ip.version == 4 and cidr not in cidrs:
            cidrs.append(cidr)
    return ",".join(cidrs)


def _tar_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for child in sorted(path.iterdir()):
            tar.add(child, arcname=child.name)
    return buf.getvalue()


__all__ = ["DaytonaSandbox", "DaytonaSandboxProvider"]
