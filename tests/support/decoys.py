"""The containment tests' world: omoi running from a directory full of decoys.

make_decoy_world writes the decoys (an `.env`, the App's key file, a HOME with an ssh key, a file in
the data dir, another sandbox's secret), each unique to the world, into a directory outside /tmp,
seeds VAULT (an approved spec's issue and branch) and builds omoi's processes with their cwd, data
dir, HOME, SQLite database and sandboxes there, the App's key in a file, and a webhook secret and
model key of their own. DecoyWorld.remove stops everything and removes the directory. approve starts
a run of an approved plan there; task_row reads its one task back.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from tests.support.conversation import comment
from tests.support.plans import FLAG_DESIGN, FLAG_REQUIREMENTS
from tests.support.world import Issue, Site, World, approve_plan, make_world

VAULT = Site("octo/vault", 77, {"README.md": "# vault\n"}, people={"alice": "maintain"},
             issues={9: Issue("Harden greetings", "Say hello.", "alice")}, branch="omoi/issue-9-harden-greetings")


class DecoyWorld(World):
    """A World whose processes run in `dir`, among the decoys."""

    dir: Path          # the processes' cwd: .env, the App key file, the SQLite database, data dir, HOME
    decoys: dict[str, str]
    pem: str           # the App's private key (in a file, as OMOI_GITHUB_PRIVATE_KEY_PATH)
    sandboxes: Path    # where this world's sandbox roots go
    markers: Path      # a world-writable host directory no jailed process may reach

    def remove(self) -> None:
        from app.db.session import get_engine

        self.stop("worker", 9)  # its warm shutdown takes seconds; nothing is left to finish
        self.stop_all()
        get_engine(self.database_url).dispose()
        shutil.rmtree(self.dir, ignore_errors=True)


def world_dir() -> Path:
    """Outside /tmp (the jail's /tmp is a tmpfs of its own, which would hide a path there for the
    wrong reason), traversable by other uids: only the jail's view may hide what is in it."""
    for parent in (Path("/var/tmp"), Path("/tmp")):
        if parent.is_dir() and os.access(parent, os.W_OK):
            path = parent / f"omoi-containment-{uuid.uuid4().hex[:10]}"
            path.mkdir(mode=0o711)
            path.chmod(0o711)
            return path
    raise RuntimeError("no writable directory for the world")


def plant(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)  # readable by any uid: permissions are not what keeps the jail out
    return path


def make_decoy_world(fake_github, fake_anthropic, rsa_keypair, **extra_env: str) -> DecoyWorld:
    """A DecoyWorld, built (not started): settings in `extra_env` override its own."""
    from app.config import Settings
    from app.sandbox.local import sandbox_base_dir

    root = world_dir()
    tag = uuid.uuid4().hex
    decoys = {
        "webhook secret": f"whsec-decoy-{tag}",
        "anthropic key": f"sk-decoy-anthropic-{tag[:16]}",
        "daytona key (.env)": f"decoy-daytona-{tag[16:]}",
        "ssh key (HOME)": f"decoy-ssh-{tag[:20]}",
        "data dir file": f"decoy-datadir-{tag[12:]}",
        "other sandbox": f"decoy-sibling-{tag[8:28]}",
    }
    plant(root / ".env", f"OMOI_DAYTONA_API_KEY={decoys['daytona key (.env)']}\n")
    key = plant(root / "omoi-app.pem", rsa_keypair[0])
    plant(root / "home" / ".ssh" / "id_ed25519", decoys["ssh key (HOME)"] + "\n")
    # shaped like the agent's findings file: if omoi ever followed a link the agent made to it, it would show
    finding = {"kind": "bug", "title": f"token {decoys['data dir file']}"}
    plant(root / "data" / "credentials.json", json.dumps([finding]))
    sandboxes = root / "sandboxes"
    sandboxes.mkdir(mode=0o711)
    plant(sandboxes / "omoi-sb-other-decoy" / "work" / "secret.txt", decoys["other sandbox"] + "\n")
    markers = root / "markers"
    markers.mkdir()
    markers.chmod(0o777)

    fake_anthropic.api_key = decoys["anthropic key"]  # only the proxy, adding the real key, gets through
    world = make_world(root, rsa_keypair, github=fake_github, anthropic=fake_anthropic, site=VAULT, cls=DecoyWorld,
                       # the key lives in a file, as an operator keeps it
                       without=("OMOI_GITHUB_PRIVATE_KEY",), extra_env={
                           "OMOI_WEBHOOK_SECRET": decoys["webhook secret"], "OMOI_GITHUB_PRIVATE_KEY_PATH": str(key),
                           "HOME": str(root / "home"), "OMOI_SANDBOX_DIR": str(sandboxes),
                           "OMOI_WORKER_CONCURRENCY": "2", "OMOI_TASK_LEASE_SECONDS": "5",
                           "OMOI_TASK_HEARTBEAT_SECONDS": "0.5", "OMOI_HEALTH_INTERVAL_SECONDS": "1",
                           "OMOI_TASK_RETRY_BACKOFF_SECONDS": "0.2", "OMOI_TASK_MAX_ATTEMPTS": "2",
                           "OMOI_VERIFY_TIMEOUT_SECONDS": "30", "OMOI_AGENT_TIMEOUT_SECONDS": "120",
                           "OMOI_AGENT_MAX_TURNS": "60", **extra_env})
    world.dir, world.decoys, world.pem, world.markers = root, decoys, rsa_keypair[0], markers
    world.sandboxes = sandbox_base_dir(Settings(sandbox_dir=str(sandboxes)))
    return world


def approve(world: DecoyWorld, tasks: list[dict]) -> None:
    """An approved spec with `tasks` (for the FLAG requirements and design), then `/omoi implement`
    from a maintainer (a signed delivery)."""
    from app.planning.schemas import RequirementsDraft, assign_ids

    approve_plan(world, tasks, requirements=assign_ids(RequirementsDraft.model_validate(FLAG_REQUIREMENTS)),
                 design=FLAG_DESIGN)
    comment(world, "/omoi implement")


def task_row(world: DecoyWorld):
    """The run's one task (its SpecTask row)."""
    from sqlalchemy import select

    from app.db.models import SpecTask
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return s.scalars(select(SpecTask)).one()
