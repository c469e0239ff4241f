"""The Daytona stand-in's state: sandboxes, their sessions and the commands run in them."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .common import DAEMON_DIR, HOME, INSIDE_PATH, USER, _absolute, _csv
from .jail import _Jail


@dataclass
class FakeSessionCommand:
    id: str
    command: str
    dir: str                 # inside path of its log dir
    run_async: bool
    suppress_input_echo: bool
    exit_code: int | None = None
    inputs: list[str] = field(default_factory=list)

    def dto(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "command": self.command}
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


@dataclass
class FakeSession:
    id: str
    proc: asyncio.subprocess.Process
    commands: dict[str, FakeSessionCommand] = field(default_factory=dict)
    deleted: bool = False

    @property
    def dir(self) -> str:
        return f"{DAEMON_DIR}/sessions/{self.id}"

    @property
    def shell_alive(self) -> bool:
        return self.proc.returncode is None


@dataclass
class FakeSandbox:
    id: str
    dir: Path                # host dir of this sandbox (its root is dir/"root")
    create_params: dict
    network_block_all: bool
    state: str = "started"
    deleted: bool = False
    created_at: str = ""
    execs: list[dict] = field(default_factory=list)
    clones: list[dict] = field(default_factory=list)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    jail: _Jail | None = None

    @property
    def workdir(self) -> PurePosixPath:
        """The work dir the sandbox reports (an inside path: it does not exist on the host)."""
        return PurePosixPath(HOME)

    @property
    def home(self) -> PurePosixPath:
        return PurePosixPath(HOME)

    @property
    def host_root(self) -> Path:
        return self.dir / "root"

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.create_params.get("labels") or {})

    @property
    def network_allow_list(self) -> list[str]:
        """The recorded CIDR allow-list (not enforced by the stand-in)."""
        return _csv(self.create_params.get("networkAllowList"))

    @property
    def domain_allow_list(self) -> list[str]:
        return _csv(self.create_params.get("domainAllowList"))

    def host_path(self, inside: str) -> Path:
        """For assertions: where an inside path lives on the host (resolved inside the root)."""
        assert self.jail is not None
        return self.jail.resolve(_absolute(inside))

    def env(self, extra: dict | None = None) -> dict[str, str]:
        """The environment a command starts with: the image's, the sandbox's env vars, the request's."""
        base = {"PATH": INSIDE_PATH, "HOME": HOME, "USER": USER, "LOGNAME": USER, "SHELL": "/bin/bash",
                "LANG": "C.UTF-8", "HOSTNAME": self.id, "TMPDIR": "/tmp"}
        return {**base, **{str(k): str(v) for k, v in (self.create_params.get("env") or {}).items()},
                **{str(k): str(v) for k, v in (extra or {}).items()}}
