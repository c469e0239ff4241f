"""The one redaction point: secrets out of everything omoi logs or sends to GitHub.

The model omoi drives may be hostile and may try to smuggle a secret out through anything omoi
writes for it (a comment, a check run, a PR body, a commit message). What is redacted:

* every configured secret (`secrets_of(settings)`): the webhook secret, the App private key (the
  whole PEM, its base64 body, every line of it, and its DER bytes in hex), the Anthropic, Daytona
  and Sentry keys;
* the live GitHub credentials a client holds (installation token, App JWT), passed as `extra`;
* each of them verbatim, reversed, hex (lower and upper case), base64 and base64url (at every byte
  alignment, so also inside a longer base64 text), percent-encoded and JSON-escaped;
* the token shapes GitHub and Anthropic use (`ghs_…`, `sk-ant-…`, PEM blocks, JWTs), configured or not.

Every literal is compiled once into one regular expression (a prefix trie, so its cost grows with
the text, not with the number of variants) and cached per set of secrets.
`app/github/client.py` runs every request body through `Redactor.body`; `app/observability/logs.py`'s `redact`
uses the same `Redactor`; `redact_outbound` is for what reaches GitHub another way (git commits).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import weakref
from functools import lru_cache
from typing import Any, Iterable
from urllib.parse import quote

from app.config import get_settings

REDACTED = "[REDACTED]"
# A configured value shorter than this is not redacted: it would eat ordinary words.
MIN_SECRET_CHARS = 6
# Pieces of a secret (a PEM line, an encoding's core) shorter than this are not redacted on their own.
MIN_PIECE_CHARS = 6

# Token shapes GitHub and Anthropic use; redacted even when omoi did not configure them.
SHAPES = (
    r"gh[pousr]_[A-Za-z0-9_]{10,}|github_pat_[A-Za-z0-9_]{20,}|sk-ant-[A-Za-z0-9_\-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"
)
_PEM_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)


# --------------------------------------------------------------------------------------------
# the variants of one secret


def _base64_cores(data: bytes) -> set[str]:
    """What any base64 (and base64url) text containing `data` contains, whatever its alignment:
    for each of the three byte offsets, the characters that depend on `data` alone."""
    cores = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        first = -(-8 * offset // 6)               # the first character free of the padding bytes
        last = (8 * (offset + len(data))) // 6    # the characters whose bits all come from `data`
        core = encoded[first:last]
        if len(core) >= MIN_PIECE_CHARS:
            cores.add(core)
            cores.add(core.translate(_URLSAFE))
    return cores


_URLSAFE = str.maketrans("+/", "-_")


def encodings(secret: str) -> set[str]:
    """`secret` verbatim, reversed, hex, base64, base64url, percent-encoded and JSON-escaped."""
    raw = secret.encode("utf-8", "surrogatepass")
    out = {secret, secret[::-1], raw.hex(), raw.hex().upper(), quote(secret, safe=""),
           json.dumps(secret)[1:-1]}
    plain = base64.b64encode(raw).decode()  # the whole encoding, padding and all, where it is not inside more
    out |= {plain, plain.translate(_URLSAFE), *_base64_cores(raw)}
    if "\n" in secret:
        out.add(secret.replace("\n", "\r\n"))
    return {v for v in out if len(v) >= MIN_PIECE_CHARS}


def _pieces(secret: str) -> tuple[set[str], set[str]]:
    """The secret and the parts of it that are secrets on their own (a PEM's body and lines), and
    literals redacted as they are (a PEM's DER bytes in hex)."""
    secret = secret.strip()
    pieces, literal = {secret}, set()
    if "-----BEGIN" in secret:
        pem = secret.replace("\\n", "\n")  # .env files often carry the PEM on one line with literal \n
        pieces.add(pem)
        for match in _PEM_RE.finditer(pem):
            pieces.add(match.group(0))
            lines = [line.strip() for line in match.group(2).splitlines()]
            lines = [line for line in lines if line and ":" not in line]  # no "Proc-Type:" headers
            pieces.add("".join(lines))
            pieces.update(line for line in lines if len(line) >= 16)
            try:
                der = base64.b64decode("".join(lines), validate=True)
            except (binascii.Error, ValueError):
                der = b""
            if der:
                literal.update((der.hex(), der.hex().upper()))  # an `xxd -p` of the key
    return pieces, literal


@lru_cache(maxsize=256)
def literals_of(secret: str) -> frozenset[str]:
    """Every string that gives `secret` (or a part of it) away."""
    if len(secret.strip()) < MIN_SECRET_CHARS:
        return frozenset()
    pieces, out = _pieces(secret)
    for piece in pieces:
        if len(piece) >= MIN_PIECE_CHARS:
            out |= encodings(piece)
    return frozenset(out)


# --------------------------------------------------------------------------------------------
# one regular expression for many literals


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, as a radix trie (longest word first at each position)."""
    return _alternation(sorted(set(words)))


def _alternation(words: list[str]) -> str:
    optional = "" in words
    groups: dict[str, list[str]] = {}
    for w in words:
        if w:
            groups.setdefault(w[0], []).append(w)
    alts = []
    for group in groups.values():
        prefix = os.path.commonprefix(group)
        rest = [w[len(prefix):] for w in group]
        alts.append(re.escape(prefix) + ("" if rest == [""] else _alternation(rest)))
    if optional:
        return "(?:" + "|".join(alts) + ")?"
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


class Redactor:
    """Replaces every secret it was built for, and every token shape, with `[REDACTED]`."""

    __slots__ = ("_regexes", "literals", "__weakref__")

    def __init__(self, literals: Iterable[str] = (), *, shapes: bool = True, base: Redactor | None = None) -> None:
        self.literals = frozenset(literals)
        parts = [_trie_pattern(self.literals)] if self.literals else []
        if shapes:
            parts.append(SHAPES)
        own = [re.compile("|".join(parts))] if parts else []
        # a `base` redactor's expressions run first (compiled once, shared by every extra set)
        self._regexes = tuple(base._regexes if base else ()) + tuple(own)

    def text(self, text: str) -> str:
        return self._redact(text)[0] if text else text

    def _redact(self, text: str) -> tuple[str, int]:
        total = 0
        for rx in self._regexes:
            text, n = rx.subn(REDACTED, text)
            total += n
        return text, total

    def value(self, value: Any) -> Any:
        """A JSON value with every string (keys too) redacted."""
        return self._value(value)[0]

    def _value(self, value: Any) -> tuple[Any, int]:
        if isinstance(value, str):
            return self._redact(value) if value else (value, 0)
        if isinstance(value, dict):
            out, total = {}, 0
            for k, v in value.items():
                k, nk = self._redact(k) if isinstance(k, str) and k else (k, 0)
                v, nv = self._value(v)
                out[k] = v
                total += nk + nv
            return out, total
        if isinstance(value, list):
            out_list, total = [], 0
            for v in value:
                v, n = self._value(v)
                out_list.append(v)
                total += n
            return out_list, total
        return value, 0

    def body(self, body: bytes, content_type: str | None = None) -> bytes:
        """An HTTP request body: a JSON body has every string value redacted and is serialised
        again (`json.dumps`, as gidgethub does); any other body is redacted as text. A body with
        nothing to redact is returned as it came (the same object)."""
        if not body:
            return body
        if "json" in (content_type or "").lower() or body[:1] in (b"{", b"["):
            try:
                data = json.loads(body)
            except (ValueError, RecursionError):
                pass
            else:
                redacted, n = self._value(data)
                return json.dumps(redacted).encode("utf-8") if n else body
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = body.decode("latin-1"), "latin-1"  # binary: ASCII secrets still match
        redacted, n = self._redact(text)
        return redacted.encode(encoding, "surrogatepass") if n else body


SHAPES_ONLY = Redactor()


@lru_cache(maxsize=32)
def redactor(secrets: frozenset[str]) -> Redactor:
    """The redactor for these secrets (and the token shapes), compiled once."""
    literals: set[str] = set()
    for secret in secrets:
        if secret:
            literals |= literals_of(secret)
    return Redactor(literals) if literals else SHAPES_ONLY


@lru_cache(maxsize=64)
def _with_extra(base: Redactor, extra: frozenset[str]) -> Redactor:
    literals: set[str] = set()
    for secret in extra:
        literals |= literals_of(secret)
    literals -= base.literals
    return Redactor(literals, shapes=False, base=base) if literals else base


# --------------------------------------------------------------------------------------------
# what omoi's settings hold

_BY_SETTINGS: dict[int, tuple[weakref.ref, tuple, Redactor]] = {}


def secrets_of(settings) -> frozenset[str]:
    """Every secret a settings object configures (the private key as the PEM it resolves to too)."""
    values = set(settings.secret_values())
    try:
        pem = settings.private_key_pem()
    except OSError:  # a key path that cannot be read: nothing to redact from it
        pem = None
    if pem:
        values.add(pem)
    return frozenset(v for v in values if v)


def _settings_key(settings) -> tuple:
    return (settings.webhook_secret, settings.github_private_key, settings.github_private_key_path,
            settings.anthropic_api_key, settings.daytona_api_key, settings.sentry_dsn)


def redactor_for(settings, extra: Iterable[str | None] = ()) -> Redactor:
    """The redactor for a settings object (built once per object and its secrets) plus `extra`
    secrets (live tokens: their own small expression, cached, run after the settings' one)."""
    key = _settings_key(settings)
    hit = _BY_SETTINGS.get(id(settings))
    if hit is None or hit[0]() is not settings or hit[1] != key:
        if len(_BY_SETTINGS) > 64:
            _BY_SETTINGS.clear()
        base = redactor(secrets_of(settings))
        _BY_SETTINGS[id(settings)] = (weakref.ref(settings), key, base)
    else:
        base = hit[2]
    extras = frozenset(e for e in extra if e and len(e) >= MIN_SECRET_CHARS)
    return _with_extra(base, extras) if extras else base


def redact_outbound(text: str, extra: Iterable[str | None] = (), *, settings=None) -> str:
    """`text` as it may reach GitHub by a way other than the API client (a commit message):
    every configured secret, every `extra` one (a live token), in every encoding, redacted."""
    if settings is None:
        settings = get_settings()
    return redactor_for(settings, extra).text(text)
