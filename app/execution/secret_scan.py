"""The secret scan: does a blob hold one of omoi's own secrets, in any encoding a model might use?

`SecretScanner(secrets).findings(data)` answers with kinds and indices, never the value. It matches
a secret verbatim, reversed, hex, base64 and base64url (all three alignments), cut into quoted pieces,
escapes or UTF-16, and inside gzip/zlib/bz2/xz data (with a cap on the inflated size: `TooLarge`).
A private key is matched by its private parts only, so the App's public key is not mistaken for it.
Used by app/execution/policy.py on every blob omoi is about to commit.
"""
from __future__ import annotations

import base64
import bz2
import lzma
import re
import zlib
import threading
from functools import lru_cache
from typing import Iterable, Iterator

OWN_SECRET = "own"  # a finding's kind; each kind's words are templates/reasons/secret/<kind>.md.j2
MIN_SECRET_CHARS = 8   # shorter configured values would match ordinary text
WINDOW = 24            # a run this long of any encoding of a secret counts as the secret
_GRAM = WINDOW // 3    # every WINDOW-long match contains at least two aligned grams this long
# Token shapes worth refusing outright (they are never part of a legitimate change).
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
)
# Which kind a report names when several are found (omoi's own secrets first).
SECRET_KINDS = (OWN_SECRET, "github_token", "private_key", "aws_key", "anthropic_key")


class TooLarge(Exception):
    pass


# Removed from both the text and the secrets' encodings before matching, so a value cut into quoted
# pieces joined by `+`, commas, line breaks or escapes (`\x41`, `\n`), or stored as UTF-16, still matches.
_NOISE = re.compile(r"\\x|[\s'\"`+,\\\x00]")


def _norm(text: str) -> str:
    return _NOISE.sub("", text)


def _pem_parts(secret: str) -> list[tuple[str, bytes]] | None:
    """For a PEM private key: its private-only parts, each as (base64 text in the PEM body, DER bytes).
    The rest (ASN.1 boilerplate, the modulus) is shared with every key of its kind or with the public
    key, so matching it would refuse innocent changes. None when `secret` is not PEM."""
    m = re.search(r"-----BEGIN [A-Z0-9 ]+-----(.+?)-----END [A-Z0-9 ]+-----", secret, re.DOTALL)
    if not m:
        return None
    body = re.sub(r"\s+", "", m.group(1))
    try:
        der = base64.b64decode(body)
    except ValueError:
        return [(body[64:], b"")]
    # base64 characters that depend only on der[start:end]
    return [(body[-(-start // 3) * 4:end // 3 * 4], der[start:end]) for start, end in _private_spans(der)]


def _private_spans(der: bytes) -> list[tuple[int, int]]:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    fallback = [(64, len(der))]
    try:
        key = load_der_private_key(der, password=None)
    except Exception:  # noqa: BLE001 - encrypted or unknown: skip the header, keep the rest
        return fallback
    if isinstance(key, rsa.RSAPrivateKey):  # d, p, q, dp, dq, qinv follow n and e to the end
        value, whole_tail = key.private_numbers().d, True
    elif isinstance(key, ec.EllipticCurvePrivateKey):  # the public point follows the scalar
        value, whole_tail = key.private_numbers().private_value, False
    else:
        return fallback
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    at = der.find(raw)
    if at < 0:
        return fallback
    return [(at, len(der) if whole_tail else at + len(raw))]


def _b64_runs(raw: bytes) -> Iterator[tuple[str, str]]:
    """The part of base64 and base64url of `raw` that does not depend on its neighbours, at each of
    the three byte alignments it can have inside a longer encoded text."""
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        inner = enc[-(-4 * k // 3):(8 * (k + len(raw))) // 6]
        yield f"base64/{k}", inner
        yield f"base64url/{k}", inner.replace("+", "-").replace("/", "_")


def _encodings(raw: bytes) -> Iterator[tuple[str, str]]:
    yield "hex", raw.hex()
    yield "HEX", raw.hex().upper()
    yield from _b64_runs(raw)


def _forms(secret: str) -> Iterator[tuple[str, str]]:
    parts = _pem_parts(secret)
    for text, der in parts if parts is not None else [(secret, b"")]:
        yield "verbatim", text
        yield "reversed", text[::-1]
        yield from _encodings(text.encode())
        if der:
            yield "DER", der.decode("latin-1")
            yield from (("DER " + form, value) for form, value in _encodings(der))


class SecretScanner:
    """Finds omoi's own secrets in content however a model dressed them up: verbatim, reversed, hex,
    base64 or base64url at any alignment, a key's body cut into pieces, inside gzip/zlib/bz2/xz data;
    and finds the shapes in SECRET_PATTERNS. `findings` returns (kind, identity) pairs; an identity
    tells two findings apart and never contains the secret."""

    def __init__(self, secrets: Iterable[str]) -> None:
        kept = list(dict.fromkeys(s for s in secrets if s and len(s.strip()) >= MIN_SECRET_CHARS))
        self._index = {secret: i for i, secret in enumerate(kept)}  # a finding names its secret by index
        self._short = [(secret, form, text) for secret in kept for form, text in _prepared(secret)[0]]
        # gram -> (secret, form, form text, offset): the largest secret's grams copied as they are, the others added
        tables = sorted((_prepared(secret)[1] for secret in kept), key=len, reverse=True)
        self._grams: dict[str, tuple[tuple[str, str, str, int], ...]] = dict(tables[0]) if tables else {}
        for table in tables[1:]:
            for g, where in table.items():
                both = self._grams.get(g, ()) + where
                if len(both) <= 4:  # a gram repeated inside the secrets identifies nothing (see _prepared)
                    self._grams[g] = both
                else:
                    self._grams.pop(g, None)

    def findings(self, data: bytes, *, inflate_cap: int = 20_000_000) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for layer in _layers(data, inflate_cap):
            found |= self._scan(layer.decode("latin-1"))
        return found

    def _scan(self, text: str) -> set[tuple[str, str]]:
        found = {(kind, m.group(0)) for kind, pattern in SECRET_PATTERNS for m in pattern.finditer(text)}
        hay = _norm(text)
        found |= {self._finding(secret, form) for secret, form, needle in self._short if needle in hay}
        for i in range(0, len(hay) - _GRAM + 1, _GRAM):
            for secret, form, text, p in self._grams.get(hay[i:i + _GRAM], ()):
                if _common_run(hay, i, text, p) >= WINDOW:
                    found.add(self._finding(secret, form))
        return found

    def _finding(self, secret: str, form: str) -> tuple[str, str]:
        return OWN_SECRET, f"secret {self._index[secret]} {form}"


@lru_cache(maxsize=32)
def _prepared(secret: str) -> tuple[tuple[tuple[str, str], ...], dict[str, tuple[tuple[str, str, str, int], ...]]]:
    """One secret's short forms and the grams of its long ones (gram -> (secret, form, form text, offset)),
    built once per secret: about 40 ms of CPU for the App's private key, which every scanner holds,
    while the hourly token that joins it in each scanner takes a millisecond."""
    short: list[tuple[str, str]] = []
    grams: dict[str, list[tuple[str, str, str, int]]] = {}
    for form, text in _forms(secret):
        text = _norm(text)
        if len(text) >= WINDOW:
            for p in range(len(text) - _GRAM + 1):
                grams.setdefault(text[p:p + _GRAM], []).append((secret, form, text, p))
        elif len(text) >= MIN_SECRET_CHARS:
            short.append((form, text))
    # A gram repeated inside the secrets identifies nothing; the other aligned gram of a window does.
    return tuple(short), {g: tuple(where) for g, where in grams.items() if len(where) <= 4}


def scanner_for(secrets: Iterable[str]) -> SecretScanner:
    """The scanner for these secrets, built once: building one for the App's private key takes about
    50 ms of CPU, and every task that lands needs it (the secrets change only with the hourly token).
    Tasks that land together wait for the one building it rather than each building their own."""
    key = tuple(dict.fromkeys(s for s in secrets if s))
    with _BUILDING:
        return _cached(key)


_BUILDING = threading.Lock()


@lru_cache(maxsize=8)
def _cached(secrets: tuple[str, ...]) -> SecretScanner:
    return SecretScanner(secrets)


def _common_run(hay: str, i: int, form: str, p: int) -> int:
    """Length of the common run through hay[i:i+_GRAM] == form[p:p+_GRAM], stopping at WINDOW."""
    left = 0
    while left < WINDOW and i - left > 0 and p - left > 0 and hay[i - left - 1] == form[p - left - 1]:
        left += 1
    right, a, b = 0, i + _GRAM, p + _GRAM
    while left + _GRAM + right < WINDOW and a + right < len(hay) and b + right < len(form) \
            and hay[a + right] == form[b + right]:
        right += 1
    return left + _GRAM + right


_COMPRESSED = (
    (re.compile(rb"\x1f\x8b\x08"), lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)),
    (re.compile(rb"\x78[\x01\x5e\x9c\xda]"), lambda: zlib.decompressobj()),
    (re.compile(rb"BZh[1-9]1AY&SY"), bz2.BZ2Decompressor),
    (re.compile(rb"\xfd7zXZ\x00"), lzma.LZMADecompressor),
)
_B64_GZIP = re.compile(rb"H4sI[A-Za-z0-9+/=\s\\n\"']{16,}")  # base64 of gzip data, as pasted into source
MAX_STREAMS = 64  # compressed streams tried per blob


def _layers(data: bytes, cap: int, depth: int = 0) -> Iterator[bytes]:
    """`data`, then what every compressed stream found inside it expands to (to depth 3). Raises
    TooLarge when the expansion passes `cap` bytes."""
    yield data
    if depth >= 3:
        return
    tried = 0
    for magic, make in _COMPRESSED:
        for m in magic.finditer(data):
            tried += 1
            if tried > MAX_STREAMS:
                return
            inner = _inflate(make(), data[m.start():], cap)
            if inner:
                yield from _layers(inner, cap, depth + 1)
    for m in _B64_GZIP.finditer(data):
        run = re.sub(rb"\\n|[^A-Za-z0-9+/]", b"", m.group(0))
        try:
            raw = base64.b64decode(run[:len(run) // 4 * 4])
        except ValueError:
            continue
        inner = _inflate(zlib.decompressobj(16 + zlib.MAX_WBITS), raw, cap)
        if inner:
            yield from _layers(inner, cap, depth + 1)


def _inflate(decompressor, data: bytes, cap: int) -> bytes | None:
    try:
        out = decompressor.decompress(data, cap + 1)
    except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
        return None
    if len(out) > cap:
        raise TooLarge()
    return out or None
