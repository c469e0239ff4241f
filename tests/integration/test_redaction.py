"""One redaction point for everything sent to GitHub (app/text/redaction.py, used by the client's
`_request`), and the same variants in the logs.

The real gidgethub client talks to the GitHub stand-in; every body the model could have written
into carries decoy secrets in every encoding, and what reached the stand-in is checked.
"""
from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

import gidgethub
import pytest

from app.config import get_settings, reset_settings_cache
from app.github.client import OmoiGitHubAPI, installation_client
from app.text.redaction import REDACTED, redact_outbound, redactor_for
from tests.support.env import WEBHOOK_SECRET

REPO = "octo/hello"
INSTALLATION = 7
ANTHROPIC_KEY = "sk-fake-anthropic-key-0123456789"
DAYTONA_KEY = "dtn-~~~???-9f8e7d6c5b4a3f2e"  # base64 of "~~~???" has '+' and '/': base64 and base64url differ
NORMAL = "Normal text stays: `make test` passed, 3 files changed (0123456789abcdef), see #12. Überprüft ✓"


def encoded(secret: str) -> dict[str, str]:
    """`secret` as a hostile model might smuggle it out."""
    raw = secret.encode()
    return {
        "verbatim": secret,
        "reversed": secret[::-1],
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
        "base64 inside other base64": base64.b64encode(b"x" + raw + b"yz").decode(),
        "base64url, unpadded, shifted": base64.urlsafe_b64encode(b"ab" + raw).decode().rstrip("="),
        "percent-encoded": quote(secret, safe=""),
    }


def pem_pieces(pem: str) -> dict[str, str]:
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    return {
        "pem": pem,
        "pem one line (\\n)": pem.strip().replace("\n", "\\n"),
        "pem base64 body": "".join(lines),
        "pem line 3": lines[3],
        "pem line 10 reversed": lines[10][::-1],
        "pem base64 of the whole": base64.b64encode(pem.encode()).decode(),
        "pem hex": pem.encode().hex(),
        "der hex": base64.b64decode("".join(lines)).hex(),
    }


@pytest.fixture
def secrets_env(github_env, fake_github, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OMOI_DAYTONA_API_KEY", DAYTONA_KEY)
    reset_settings_cache()
    fake_github.add_installation(INSTALLATION, "octo")
    fake_github.add_repo(REPO, installation_id=INSTALLATION, files={"README.md": "hi\n"})
    fake_github.add_issue(REPO, 1, title="t", user="alice")
    return fake_github


def decoys(token: str, pem: str) -> dict[str, str]:
    out = {}
    for name, secret in (("webhook secret", WEBHOOK_SECRET), ("anthropic key", ANTHROPIC_KEY),
                         ("daytona key", DAYTONA_KEY), ("installation token", token)):
        out |= {f"{name} {kind}": value for kind, value in encoded(secret).items()}
    out |= pem_pieces(pem)
    return out


def hostile(decoy_values: dict[str, str]) -> str:
    return NORMAL + "\n" + "\n".join(f"{name}: {value} ." for name, value in decoy_values.items())


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def assert_clean(calls, decoy_values: dict[str, str]) -> None:
    assert calls
    for call in calls:
        sent = "\n".join(strings(call.json))
        leaked = [name for name, value in decoy_values.items() if value in sent]
        assert leaked == [], (call.method, call.path, leaked)
        assert REDACTED in sent, (call.method, call.path)
        assert NORMAL in sent, (call.method, call.path)  # the text around the secrets is untouched


async def test_every_body_sent_to_github_is_redacted(secrets_env, rsa_keypair):
    fake = secrets_env
    settings = get_settings()
    pem = rsa_keypair[0]
    async with installation_client(settings, INSTALLATION) as gh:
        token = gh.oauth_token
        assert token
        values = decoys(token, pem)
        text = hostile(values)

        # an issue comment, created and edited
        comment = await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": text})
        await gh.patch(f"/repos/{REPO}/issues/comments/{comment['id']}", data={"body": "edited\n" + text})
        # a check run: title, summary, text
        main = await gh.getitem(f"/repos/{REPO}/branches/main")
        sha = main["commit"]["sha"]
        await gh.post(f"/repos/{REPO}/check-runs", data={
            "name": "omoi / task", "head_sha": sha, "status": "completed", "conclusion": "failure",
            "output": {"title": NORMAL + " " + values["installation token reversed"],
                       "summary": text, "text": text}})
        # a commit message (contents API), then a pull request title and body
        await gh.post(f"/repos/{REPO}/git/refs", data={"ref": "refs/heads/omoi/issue-1", "sha": sha})
        await gh.put(f"/repos/{REPO}/contents/NOTES.md", data={
            "message": text, "content": base64.b64encode(b"notes\n").decode(), "branch": "omoi/issue-1"})
        pr = await gh.post(f"/repos/{REPO}/pulls", data={
            "title": NORMAL + " " + values["webhook secret base64"], "head": "omoi/issue-1", "base": "main",
            "body": text})
        # GraphQL variables (the stand-in refuses the id; what it received is what counts)
        try:
            await gh.graphql("mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id})"
                             " { clientMutationId } }", id=text)
        except gidgethub.GitHubException:
            pass

    # what reached the stand-in carries none of the decoys, and the token still authenticated it
    for method, path in (("POST", r"/issues/1/comments$"), ("PATCH", r"/issues/comments/\d+$"),
                         ("POST", r"/check-runs$"), ("PUT", r"/contents/NOTES.md$"), ("POST", r"/pulls$"),
                         ("POST", r"/graphql$")):
        assert_clean(fake.calls_matching(method, path), values)
    stored = fake.issue_comments(REPO, 1)[0]["body"]
    assert stored.startswith("edited\n" + NORMAL) and not [n for n, v in values.items() if v in stored]
    assert pr["title"].startswith(NORMAL) and values["webhook secret base64"] not in pr["title"]
    assert fake.violations == []


async def test_a_body_without_secrets_is_sent_byte_for_byte(secrets_env):
    fake = secrets_env
    async with installation_client(get_settings(), INSTALLATION) as gh:
        await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": NORMAL})
        await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": "token-ish words: ghost_town, sk-ant, eyJ"})
    bodies = [c.json["body"] for c in fake.calls_matching("POST", r"/issues/1/comments$")]
    assert bodies == [NORMAL, "token-ish words: ghost_town, sk-ant, eyJ"]


async def test_the_app_jwt_and_any_token_a_request_carries_are_redacted(secrets_env, rsa_keypair):
    """The App client's JWT, in every encoding, never leaves in a body (headers are not bodies)."""
    settings = get_settings()
    gh = OmoiGitHubAPI(None, settings, app_id=str(settings.github_app_id), private_key=settings.private_key_pem())
    jwt = gh._get_app_jwt()
    body = json.dumps({"note": " ".join(encoded(jwt).values()) + " " + NORMAL}).encode()
    headers = {"authorization": f"bearer {jwt}", "content-type": "application/json; charset=utf-8",
               "content-length": str(len(body))}
    out_headers, out = gh._outbound(headers, body)
    sent = json.loads(out)["note"]
    assert [kind for kind, value in encoded(jwt).items() if value in sent] == []
    assert sent.endswith(NORMAL)
    assert out_headers["authorization"] == f"bearer {jwt}"
    assert out_headers["content-length"] == str(len(out))
    # a token passed for one request only (gidgethub's `oauth_token=` argument) is redacted too
    other = "ghs_" + "Q" * 36
    _, out = gh._outbound({"Authorization": f"token {other}", "content-type": "text/plain"},
                          f"{other[::-1]} {base64.b64encode(other.encode()).decode()}".encode())
    assert out == f"{REDACTED} {REDACTED}".encode()


def test_redact_outbound_for_commit_messages(secrets_env, rsa_keypair):
    token = "ghs_" + "t0k3n" * 8
    message = "Add greeting\n\n" + " ".join(decoys(token, rsa_keypair[0]).values())
    out = redact_outbound(message, extra=[token])
    assert out.startswith("Add greeting\n\n")
    assert [n for n, v in decoys(token, rsa_keypair[0]).items() if v in out] == []
    assert redact_outbound(NORMAL) == NORMAL


def test_logs_use_the_same_variants(secrets_env, rsa_keypair):
    from app.observability.logs import _redact_processor, redact, set_secrets

    set_secrets(get_settings().secret_values())  # what `configure_logging` is given
    try:
        values = {n: v for n, v in decoys("ghs_" + "z" * 36, rsa_keypair[0]).items()
                  if not n.startswith("installation token") or n.endswith("verbatim")}
        for name, value in values.items():
            assert value not in redact(f"x {value} y"), name
        event = _redact_processor(None, "warning", {"event": "leak", "detail": hostile(values), "n": 3})
        assert event["n"] == 3 and event["detail"].startswith(NORMAL)
        assert [n for n, v in values.items() if v in event["detail"]] == []
        assert redact(NORMAL) == NORMAL
    finally:
        set_secrets([])


def test_redaction_is_fast_for_the_largest_comment(secrets_env):
    redactor = redactor_for(get_settings(), ["ghs_" + "a" * 36])
    assert redactor is redactor_for(get_settings(), ["ghs_" + "a" * 36])  # built once, cached
    text = (NORMAL + " ") * (65536 // (len(NORMAL) + 1))  # GitHub's comment limit
    started = time.perf_counter()
    for _ in range(10):
        assert redactor.text(text) == text
    assert (time.perf_counter() - started) / 10 < 0.1  # ~6 ms on these machines
