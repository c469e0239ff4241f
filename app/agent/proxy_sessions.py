"""The model proxy's sessions: one agent session's allowance and what it has used so far.

A session is found by its capability token: in this process's memory (`MemorySessions`: a local
sandbox's proxy serves one session) or in the `model_sessions` table (`DatabaseSessions`, opened by a
worker with `open_db_session` and served by any web process; only the token's SHA-256 is stored).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from app.db.models import ModelSession
from app.db.session import session_scope
from app.llm.pricing import Usage, cost_usd
from app.timeutil import as_utc, utc_now
from app.text.rendering import Reason, reason


@dataclass
class ProxySession:
    """One agent session's allowance and what it has used so far."""

    max_usd: float | None = None
    max_tokens_total: int | None = None
    max_tokens_per_request: int | None = None
    token: str = field(default_factory=lambda: new_token())
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    refused: list[Reason] = field(default_factory=list)
    row_id: int | None = None  # model_sessions.id of a database-backed session

    def exhausted(self) -> Reason | None:
        if self.max_usd is not None and self.cost_usd >= self.max_usd:
            return reason("agent/session_budget", usd=float(self.max_usd))
        if self.max_tokens_total is not None and self.input_tokens + self.output_tokens >= self.max_tokens_total:
            return reason("agent/session_tokens", tokens=self.max_tokens_total)
        return None

    def record(self, model: str, usage: dict) -> tuple[float, int, int]:
        """Add one call's usage; returns what it added: (dollars, input tokens, output tokens)."""
        counted = Usage.of(usage)
        added = (float(cost_usd(model or "", counted)),
                 counted.input_tokens + counted.cache_creation_input_tokens + counted.cache_read_input_tokens,
                 counted.output_tokens)
        self.cost_usd += added[0]
        self.input_tokens += added[1]
        self.output_tokens += added[2]
        return added


def new_token() -> str:
    """A session's capability token (the `omoi-session-` prefix lets the web proxy skip the database for
    anything else)."""
    return "omoi-session-" + secrets.token_urlsafe(32)


class MemorySessions:
    """Sessions of this process (a local sandbox's proxy lives as long as its one session)."""

    def __init__(self) -> None:
        self.sessions: dict[str, ProxySession] = {}

    async def find(self, token: str) -> ProxySession | None:
        found = None
        for known, session in self.sessions.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = session
        return found

    async def record(self, session: ProxySession, model: str, usage: dict) -> None:
        session.record(model, usage)


class DatabaseSessions:
    """Sessions in `model_sessions` (opened by a worker with `open_db_session`): found by the token's
    SHA-256, refused once closed or expired, usage added with one UPDATE per call."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def find(self, token: str) -> ProxySession | None:
        if not token.startswith("omoi-session-"):
            return None
        return await asyncio.to_thread(self._find, _sha256(token))

    def _find(self, digest: str) -> ProxySession | None:
        with session_scope(self.database_url) as s:
            row = s.query(ModelSession).filter_by(token_sha256=digest).one_or_none()
            if row is None or row.closed_at is not None or as_utc(row.expires_at) <= utc_now():
                return None
            session = ProxySession(max_usd=float(row.max_usd) if row.max_usd is not None else None,
                                   max_tokens_total=row.max_tokens_total,
                                   max_tokens_per_request=row.max_tokens_per_request, token="")
            session.cost_usd, session.calls = float(row.cost_usd or 0), row.calls
            session.input_tokens, session.output_tokens = row.input_tokens, row.output_tokens
            session.row_id = row.id
            return session

    async def record(self, session: ProxySession, model: str, usage: dict) -> None:
        await asyncio.to_thread(self._add, session.row_id, *session.record(model, usage))

    def _add(self, row_id: int, cost: float, tokens_in: int, tokens_out: int) -> None:
        with session_scope(self.database_url) as s:
            s.execute(update(ModelSession).where(ModelSession.id == row_id).values(
                cost_usd=ModelSession.cost_usd + Decimal(str(round(cost, 6))),
                input_tokens=ModelSession.input_tokens + tokens_in,
                output_tokens=ModelSession.output_tokens + tokens_out, calls=ModelSession.calls + 1))


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_db_session(database_url: str, *, label: str, ttl_s: float, max_usd: float | None = None,
                    max_tokens_total: int | None = None, max_tokens_per_request: int | None = None) -> tuple[str, int]:
    """A new session for a remote sandbox: returns (token, row id). The token is shown once, here."""
    token = new_token()
    with session_scope(database_url) as s:
        row = ModelSession(token_sha256=_sha256(token), label=label[:200], max_usd=max_usd,
                           max_tokens_total=max_tokens_total, max_tokens_per_request=max_tokens_per_request,
                           expires_at=utc_now() + timedelta(seconds=ttl_s))
        s.add(row)
        s.flush()
        return token, row.id


def close_db_session(database_url: str, row_id: int) -> dict:
    """End a remote session (its token is refused from now on); returns what it used."""
    with session_scope(database_url) as s:
        row = s.get(ModelSession, row_id)
        if row is None:
            return {}
        row.closed_at = row.closed_at or utc_now()
        return {"cost_usd": float(row.cost_usd or 0), "calls": row.calls, "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens}
