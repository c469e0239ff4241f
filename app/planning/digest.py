"""EXPLORE: a bounded digest of the target repository, read from its default branch in two calls.

The digest is the large shared context of every planning call (sent once, then cached by
the model API), so it is bounded: the tree is capped, and only the files people keep to
describe a project - README, manifests, agent instructions - are included, each truncated.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.github import repo_vars
from app.text.rendering import render_line

MAX_TREE_PATHS = 1500
MAX_FILE_CHARS = 8000
MAX_DIGEST_CHARS = 60000
NOTES = "prompts/digest_notes.j2"  # the digest's own words
# Files users already keep for humans and agents, in the order they are most useful.
KEY_FILES = (
    "README.md", "README.rst", "README.txt", "README",
    "AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md", "CONTRIBUTING.md",
    "pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "package.json", "go.mod",
    "Cargo.toml", "pom.xml", "build.gradle", "Gemfile", "composer.json", "Makefile", "justfile",
    "tox.ini", "pytest.ini",
)


@dataclass
class RepoDigest:
    base_sha: str
    default_branch: str
    files: list[str]
    text: str



def _digest_query() -> str:
    """One GraphQL query for the default branch, its head and the text of every key file there."""
    files = "\n".join(f'  f{i}: object(expression: "HEAD:{path}") {{ ... on Blob {{ text isBinary }} }}'
                      for i, path in enumerate(KEY_FILES))
    return ("query($owner: String!, $name: String!) {\n repository(owner: $owner, name: $name) {\n"
            "  defaultBranchRef { name target { oid } }\n" + files + "\n }\n}")


DIGEST_QUERY = _digest_query()


async def build_digest(gh, full_name: str) -> RepoDigest:
    """Two calls: the branch, its head and the key files in one GraphQL query, the whole tree in one REST
    call (GraphQL lists a tree one level at a time)."""
    names = repo_vars(full_name)
    data = await gh.graphql(DIGEST_QUERY, owner=names["owner"], name=names["repo"])
    repo = data["repository"]
    ref = repo.get("defaultBranchRef") or {}
    branch, sha = ref.get("name") or "main", (ref.get("target") or {}).get("oid")
    tree = await gh.getitem(
        "/repos/{owner}/{repo}/git/trees/{tree_sha}{?recursive}",
        url_vars={**names, "tree_sha": sha, "recursive": "1"},
    )
    files = sorted(e["path"] for e in tree.get("tree", []) if e.get("type") == "blob")
    parts = [render_line(NOTES, part="title", full_name=full_name, branch=branch, sha=sha), "",
             render_line(NOTES, part="files")]
    shown = files[:MAX_TREE_PATHS]
    parts += shown
    if len(files) > len(shown):
        parts.append(render_line(NOTES, part="more_files", count=len(files) - len(shown)))
    for i, path in enumerate(KEY_FILES):
        blob = repo.get(f"f{i}") or {}
        text = blob.get("text")
        if text is None or blob.get("isBinary"):
            continue
        if len(text) > MAX_FILE_CHARS:
            text = text[:MAX_FILE_CHARS] + "\n" + render_line(NOTES, part="file_cut")
        parts += ["", f"## {path}", "```", text.replace("```", "ʼʼʼ"), "```"]
    digest = "\n".join(parts)
    if len(digest) > MAX_DIGEST_CHARS:
        digest = digest[:MAX_DIGEST_CHARS] + "\n" + render_line(NOTES, part="digest_cut")
    return RepoDigest(base_sha=sha, default_branch=branch, files=files, text=digest)
