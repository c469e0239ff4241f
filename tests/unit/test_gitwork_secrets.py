"""omoi's commit clone refuses a change that carries one of omoi's secrets, however it is dressed up:
verbatim, reversed, hex, base64/base64url at every alignment, cut into pieces, escaped, UTF-16,
compressed, in a file name; the App's private key however it is cut; secret-shaped strings.

Real git throughout (tests/support/gitwork.py), as in tests/unit/test_gitwork_clone.py.
"""
from __future__ import annotations

import base64
import gzip
import secrets
import zlib
from typing import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.execution import policy
from tests.support.gitwork import FILES, TOKEN, push, refused, writes


# -- secrets, however they are dressed up ---------------------------------------------------------

def decoy() -> str:
    return f"decoy-{secrets.token_hex(16)}"


def pem_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def b64(prefix: bytes, value: str, url: bool = False) -> str:
    raw = prefix + value.encode() + b"!?"
    return (base64.urlsafe_b64encode(raw) if url else base64.b64encode(raw)).decode()


def split_variables(body: str) -> str:
    body = body[500:]  # well after the public modulus
    pieces = [body[i:i + 30] for i in range(0, len(body), 30)]
    return "\n".join(f"part_{i} = \"{p}\"" for i, p in enumerate(pieces)) + "\nkey = " + " + ".join(
        f"part_{i}" for i in range(len(pieces))) + "\n"


ENCODINGS: dict[str, Callable[[str], dict[str, str | bytes]]] = {
    "verbatim": lambda s: {"config.py": f"SECRET = '{s}'\n"},
    "reversed": lambda s: {"config.py": f"SECRET = '{s[::-1]}'[::-1]\n"},
    "base64 aligned 0": lambda s: {"data.txt": b64(b"", s) + "\n"},
    "base64 aligned 1": lambda s: {"data.txt": b64(b"a", s) + "\n"},
    "base64 aligned 2": lambda s: {"data.txt": b64(b"ab", s) + "\n"},
    "base64url aligned 0": lambda s: {"data.txt": b64(b"", s, url=True) + "\n"},
    "base64url aligned 1": lambda s: {"data.txt": b64(b"?", s, url=True) + "\n"},
    "base64url aligned 2": lambda s: {"data.txt": b64(b"?>", s, url=True) + "\n"},
    "hex": lambda s: {"data.txt": s.encode().hex() + "\n"},
    "HEX": lambda s: {"data.txt": s.encode().hex().upper() + "\n"},
    "split into strings": lambda s: {"config.py": "S = (" + " ".join(f'"{s[i:i + 5]}"' for i in range(0, len(s), 5))
                                     + ")\n"},
    "escaped bytes": lambda s: {"config.py": "S = b'" + "".join(f"\\x{b:02x}" for b in s.encode()) + "'\n"},
    "UTF-16 text": lambda s: {"notes.txt": s.encode("utf-16-le")},
    "in a file name": lambda s: {f"cache/{s}.txt": "x\n"},
    "gzip blob": lambda s: {"dump.gz": gzip.compress(f"token={s}\n".encode())},
    "zlib blob": lambda s: {"dump.z": zlib.compress(f"token={s}\n".encode())},
    "gzip as base64 in source": lambda s: {"blob.py": "DATA = '" + base64.b64encode(
        gzip.compress(s.encode(), mtime=0)).decode() + "'\n"},
}
BINARY = {"gzip blob", "zlib blob", "UTF-16 text"}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_own_secret_is_refused_in_every_encoding(origin, clone, encoding):
    secret = decoy()
    base, patch = origin.patch(writes(ENCODINGS[encoding](secret)))
    reason = refused(clone, origin, base, patch, secrets=["unrelated-secret-" + secrets.token_hex(8), secret],
                     limits=policy.Limits(allow_binary=encoding in BINARY))
    assert "secret" in reason and secret not in reason and secret[6:30] not in reason


PEM_CASES: dict[str, Callable[[str], dict[str, str | bytes]]] = {
    "whole key": lambda pem: {"key.pem": pem.replace("PRIVATE KEY", "KEY")},
    "body only": lambda pem: {"key.txt": pem_body(pem)},
    "body in JSON": lambda pem: {"key.json": '{"k": "' + "\\n".join(pem.splitlines()[1:-1]) + '"}\n'},
    "body split across variables": lambda pem: {"k.py": split_variables(pem_body(pem))},
    "body re-wrapped": lambda pem: {"k.txt": "\n".join(pem_body(pem)[i:i + 50] for i in range(0, 1600, 50))},
    "DER, gzipped": lambda pem: {"k.der.gz": gzip.compress(base64.b64decode(pem_body(pem)))},
    "base64 of the PEM file": lambda pem: {"k.b64": base64.b64encode(pem.replace("PRIVATE KEY", "K").encode()).decode()},
}


@pytest.mark.parametrize("case", list(PEM_CASES))
def test_app_private_key_is_refused_however_it_is_cut(origin, clone, case):
    pem = pem_key()
    base, patch = origin.patch(writes(PEM_CASES[case](pem)))
    reason = refused(clone, origin, base, patch, secrets=[pem], limits=policy.Limits(allow_binary=True))
    assert "secret" in reason and pem_body(pem)[100:130] not in reason


def test_the_app_public_key_is_not_mistaken_for_the_private_key(origin, clone):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other = pem_body(pem_key())[:600]  # another key's boilerplate and modulus
    base, patch = origin.patch(writes({"keys/app.pub": public, "notes.txt": other}))
    push(clone, base, patch, secrets=[pem])
    assert origin.file("keys/app.pub").startswith("-----BEGIN PUBLIC KEY-----")


SHAPES = {
    "GitHub token": "ghs_" + "A1b2C3d4" * 5,
    "Anthropic key": "sk-ant-api03-" + "Zz9_" * 8,
    "PEM header": "-----BEGIN RSA PRIVATE KEY-----",
    "AWS key": "AKIA" + "QWERTYUIOP234567",
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_secret_shapes_are_refused_in_applied_content(origin, clone, shape):
    base, patch = origin.patch(writes({"conf/settings.txt": f"value = {SHAPES[shape]}\n"}))
    reason = refused(clone, origin, base, patch)
    assert "`conf/settings.txt`" in reason and "looks like" in reason and SHAPES[shape] not in reason


def test_installation_token_is_always_scanned_for(origin, clone):
    base, patch = origin.patch(writes({"x.txt": base64.b64encode(TOKEN.encode()).decode() + "\n"}))
    assert "secret" in refused(clone, origin, base, patch)


def test_secret_already_in_the_file_does_not_block_edits(origin, clone):
    base, patch = origin.patch(writes({"docs/keys.md": FILES["docs/keys.md"] + "More notes.\n"}))
    push(clone, base, patch)
    assert origin.file("docs/keys.md").endswith("More notes.")


def test_compression_bomb_is_refused(origin, clone):
    base, patch = origin.patch(writes({"bomb.gz": gzip.compress(b"\0" * 3_000_000)}))
    reason = refused(clone, origin, base, patch, limits=policy.Limits(allow_binary=True, max_inflated_bytes=1_000_000))
    assert "`bomb.gz`" in reason and "expands" in reason


def test_secrets_from_settings():
    from app.config import Settings

    pem = pem_key()
    settings = Settings(webhook_secret="whsec-" + "1" * 20, github_private_key=pem.replace("\n", "\\n"),
                        anthropic_api_key="sk-ant-" + "2" * 30, daytona_api_key="dtn_" + "3" * 30)
    found = policy.secrets_from_settings(settings, extra=[TOKEN, None, ""])
    assert {TOKEN, "whsec-" + "1" * 20, pem, "sk-ant-" + "2" * 30, "dtn_" + "3" * 30} <= set(found)
    unset = Settings(github_private_key_path="/nonexistent/key.pem", webhook_secret=None, anthropic_api_key=None,
                     daytona_api_key=None)
    assert policy.secrets_from_settings(unset, extra=[TOKEN]) == [TOKEN]


def test_applied_paths_are_checked_not_the_patch_text(origin, clone):
    """A plain (non-git) unified diff: `git apply` strips the first path component, so the file lands
    in `.github/workflows/` although no line of the patch text starts with `a/.github`."""
    patch = ("--- x/.github/workflows/ci.yml\n+++ x/.github/workflows/ci.yml\n"
             "@@ -0,0 +1 @@\n+on: push\n")
    limits = policy.Limits(blocked_paths=(".github/**",))
    assert policy.precheck(patch, limits) is None  # the text check is fooled
    reason = refused(clone, origin, origin.head(), patch, limits=limits)
    assert "`.github/workflows/ci.yml`" in reason and "blocked path `.github/**`" in reason
