"""A local stand-in for Daytona: the control plane and, per sandbox, the toolbox daemon inside it.

Same shape as tests/fakes/anthropic/: an aiohttp server in a background thread (own event
loop) on 127.0.0.1 and a random port. Point the `daytona` SDK (0.226.1) at `fake.api_url`
(`http://127.0.0.1:PORT/api`); every sandbox DTO carries `toolboxProxyUrl =
http://127.0.0.1:PORT/toolbox`, so the SDK's toolbox calls (`<toolboxProxyUrl>/<id>/<path>`)
come back here too.

**Each sandbox is a root of its own, as strict as a real one.** Its files live in a private host
directory (`<fake tmp>/<id>/root`) that a bubblewrap jail mounts as `/`: `/home/daytona` (home and
work dir, user `daytona`, uid 1000), a persistent `/tmp`, a generated `/etc/passwd` ...; the host's
`/usr` (and the merged `/bin`, `/lib` links), a few harmless `/etc` files, a fresh `/proc` and a
minimal `/dev` are mounted read-only on top. Nothing on the host answers at the paths the sandbox
reports: `/home/daytona/repo` exists only inside. One long-lived jail per sandbox owns the user,
PID, mount, IPC, UTS and (unless the sandbox may use the network) network namespaces, and every
command (`process/execute`, each session's shell, `git clone`) is entered into them with
`nsenter`, so, as in one real container, processes see each other, a server started by one
command is reachable from the next, and deleting the sandbox ends all of them. The Claude Code CLI
bundled in the claude-agent-sdk wheel is mounted at `/usr/local/bin/claude` (a real snapshot
would have it installed). File API paths are resolved inside that root the way the kernel would
resolve them in the sandbox (`..` stops at `/`, symlinks are followed inside it); the read-only
system mounts and `/proc`, `/dev` are refused (403), so no request can read or write a host file.

Network: `networkBlockAll` (default: blocked, `FakeDaytona(network_blocked_by_default=...)`) gives
the jail its own network namespace with only loopback; otherwise it shares the host's. A
`networkAllowList`/`domainAllowList` is recorded (`FakeSandbox.network_allow_list`), not enforced.

Implemented (what AsyncDaytona / AsyncSandbox call), answers shaped like the real ones:

- control plane: `POST /api/sandbox` (faults: `fail_next_creates(n, status=429|503)`),
  `GET /api/sandbox` (label filter, cursor paging), `GET|DELETE /api/sandbox/{id}`,
  `GET /api/sandbox/{id}/toolbox-proxy-url`;
- toolbox: `GET /work-dir`, `GET /user-home-dir` (both `/home/daytona`);
  `POST /process/execute` (run by bash, or zsh/sh, like the daemon; stdout+stderr in `result`;
  408 on timeout);
  sessions, modelled on the daemon (one shell per session, commands run one after another in
  it, so `cd`/`export` persist; each command's stdout/stderr are labelled line by line with
  `\\x01\\x01\\x01` / `\\x02\\x02\\x02` into `~/.daytona/sessions/<sid>/<cmd>/output.log`; an async
  command's stdin is a FIFO held open until it ends, fed by `.../input`, which also echoes the
  input into the log as stdout unless `suppressInputEcho`): `POST|GET /process/session`,
  `GET|DELETE /process/session/{sid}`, `POST /process/session/{sid}/exec` (`runAsync`: 202
  `{cmdId}`; else 200 `{cmdId, output, stdout, stderr, exitCode}`, `output` still labelled),
  `GET /process/session/{sid}/command/{cid}` (`exitCode` once ended),
  `GET .../command/{cid}/logs` (JSON `{output, stdout, stderr}`; with `Upgrade: websocket` the
  raw labelled log as binary frames, followed until the command ends with `?follow=true`, then
  close 1000), `POST .../command/{cid}/input` (204; 410 once the command ended; waits up to 2 s
  for a just-started command to open its stdin);
  files: `POST /files/bulk-upload`, `POST /files/bulk-download`, `GET /files` (list),
  `GET /files/info`, `DELETE /files`, `POST /files/folder`, `POST /files/move`;
  `POST /git/clone` (URLs in `fake.repo_map` are "on the internet": cloned by the fake from the
  local path they map to, only if the sandbox has network; others are cloned inside the jail).

Not served (404 and recorded in `fake.unhandled`): PTY, code-run, LSP, computer use, git other
than clone. `fake.requests` records every request; `fake.sandboxes[id]` is a `FakeSandbox`.
`jail_unavailable_reason()` says why sandboxes cannot run here; `start()` then skips the test.

Layout: ``server.py`` (FakeDaytona: routes, auth, recording, control plane), ``process.py``
(process/execute and sessions), ``files.py`` (file API), ``git_clone.py`` (git/clone),
``jail.py`` (the bubblewrap jail), ``sandbox.py`` (sandboxes, sessions, commands),
``common.py`` (paths, labels, errors). The names below are re-exported so
``from tests.fakes.daytona import ...`` keeps working.
"""
from .common import (
    CLAUDE_INSIDE,
    DAEMON_DIR,
    ETC_FROM_HOST,
    HOME,
    INPUT_PIPE_WAIT_S,
    INSIDE_PATH,
    INSIDE_UID,
    LOG_POLL_S,
    MERGED_USR,
    REC,
    SHELLS,
    STDERR_PREFIX,
    STDOUT_PREFIX,
    USER,
    RecordedRequest,
)
from .jail import claude_cli, jail_unavailable_reason
from .process import demux
from .sandbox import FakeSandbox, FakeSession, FakeSessionCommand
from .server import FakeDaytona

__all__ = [
    "CLAUDE_INSIDE", "DAEMON_DIR", "ETC_FROM_HOST", "HOME", "INPUT_PIPE_WAIT_S", "INSIDE_PATH", "INSIDE_UID",
    "LOG_POLL_S", "MERGED_USR", "REC", "SHELLS", "STDERR_PREFIX", "STDOUT_PREFIX", "USER", "FakeDaytona",
    "FakeSandbox", "FakeSession", "FakeSessionCommand", "RecordedRequest", "claude_cli", "demux",
    "jail_unavailable_reason",
]
