"""The one way omoi asks the model for data: forced tool use validated by pydantic.

`structured_output(prompt, Model)` offers exactly one tool, `emit_<model_name>`, whose input
schema is `Model.model_json_schema()`, forces it with `tool_choice`, and validates the
tool_use input. One repair round-trip is allowed (tool_result with is_error + the validation
errors); a second failure raises `LLMOutputInvalid`. Free text is never parsed.

Every API call, failed or not, is written to `llm_calls` and counted in Prometheus.
API errors that survive the SDK's own retries (429/529/5xx, connection errors) propagate as
the SDK's exceptions, so Celery can retry the task.
"""
from __future__ import annotations

import asyncio
import re
import time
import weakref
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import anthropic
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from app.config import get_settings
from app.db.models import LLMCall
from app.db.session import session_scope
from app.llm.pricing import (  # noqa: F401 - part of this module's interface
    CACHE_READ_MULTIPLIER, CACHE_WRITE_MULTIPLIER, DEFAULT_PRICE_PER_MTOK, PRICES_PER_MTOK, Usage, cost_usd, price_for,
)
from app.observability.logs import get_logger, redact
from app.observability.metrics import LLM_COST, LLM_TOKENS
from app.text.rendering import render_line

log = get_logger("omoi.llm")

T = TypeVar("T", bound=BaseModel)

EPHEMERAL = {"type": "ephemeral"}
TEXTS = "prompts/structured.j2"  # what this module says to the model, chosen by `part`

_MAX_ERROR_CHARS = 2000


class LLMError(Exception):
    """Base class for omoi's own model-call errors (SDK errors are not wrapped)."""


class LLMNotConfigured(LLMError):
    """No Anthropic API key is configured."""


class LLMOutputInvalid(LLMError):
    """The model's tool input failed validation twice (or it never called the tool)."""

    def __init__(self, message: str, errors: list[dict] | None = None, output: Any = None) -> None:
        super().__init__(message)
        self.errors = errors or []
        self.output = output


def tool_name_for(output_type: type[BaseModel]) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", output_type.__name__).lower()
    snake = re.sub(r"[^a-z0-9_]+", "_", snake).strip("_") or "result"
    return f"emit_{snake}"[:64]


def tool_for(output_type: type[BaseModel]) -> dict:
    schema = output_type.model_json_schema()
    if schema.get("type") != "object":
        raise TypeError(f"{output_type.__name__} must produce a JSON object schema for tool use")
    doc = (output_type.__doc__ or "").strip()
    if not doc or doc.startswith(f"{output_type.__name__}("):  # pydantic's generated repr-doc
        doc = render_line(TEXTS, part="tool", type_name=output_type.__name__)
    return {"name": tool_name_for(output_type), "description": doc, "input_schema": schema}


# --------------------------------------------------------------------------------------------
# client: one per event loop (httpx connections belong to a loop) and configuration

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, anthropic.AsyncAnthropic]]" = (
    weakref.WeakKeyDictionary()
)


def get_client() -> anthropic.AsyncAnthropic:
    settings = get_settings()
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
    if not key:
        raise LLMNotConfigured(
            "no Anthropic API key configured: set ANTHROPIC_API_KEY or OMOI_ANTHROPIC_API_KEY"
        )
    config = (key, settings.anthropic_base_url or None, settings.llm_timeout_seconds, settings.llm_max_retries)
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(config)
    if client is None:
        client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=settings.anthropic_base_url or None,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
        per_loop[config] = client
    return client


# --------------------------------------------------------------------------------------------
# accounting


def _record_sync(row: dict) -> None:
    with session_scope() as session:
        session.add(LLMCall(**row))


async def _record(*, model: str, purpose: str, spec_id: int | None, usage: Usage, started: float,
                  ok: bool, error: str | None) -> None:
    cost = cost_usd(model, usage)
    duration_ms = int((time.monotonic() - started) * 1000)
    for kind, n in (("input", usage.input_tokens), ("output", usage.output_tokens),
                    ("cache_creation", usage.cache_creation_input_tokens),
                    ("cache_read", usage.cache_read_input_tokens)):
        if n:
            LLM_TOKENS.labels(model=model, kind=kind).inc(n)
    if cost:
        LLM_COST.labels(model=model).inc(float(cost))
    if error is not None:
        error = redact(error)[:_MAX_ERROR_CHARS]
    row = dict(
        spec_id=spec_id, purpose=purpose[:64], model=model[:128],
        input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cost_usd=cost, duration_ms=duration_ms, ok=ok, error=error,
    )
    log.info("llm_call", model=model, purpose=purpose, spec_id=spec_id, ok=ok,
             input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
             cache_creation_input_tokens=usage.cache_creation_input_tokens,
             cache_read_input_tokens=usage.cache_read_input_tokens,
             cost_usd=str(cost), duration_ms=duration_ms, error=error)
    try:
        await asyncio.to_thread(_record_sync, row)
    except Exception:  # noqa: BLE001 - accounting must not turn a good answer into a failure
        log.exception("llm_call_not_recorded", model=model, purpose=purpose, spec_id=spec_id)


def _api_error_text(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    text = f"{type(exc).__name__}" + (f" {status}" if status else "") + f": {exc}"
    return text


# --------------------------------------------------------------------------------------------
# the call


def _format_errors(errors: list[dict]) -> str:
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(root)"
        lines.append(f"- {loc}: {e.get('msg')}")
    return "\n".join(lines)


def _assistant_blocks(content: list[Any]) -> list[dict]:
    blocks = []
    for b in content:
        if b.type == "text" and b.text:
            blocks.append({"type": "text", "text": b.text})
        elif b.type == "tool_use":
            blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
    return blocks


@dataclass
class _Attempt:
    ok: bool
    value: Any = None
    errors: list[dict] = field(default_factory=list)
    summary: str = ""
    output: Any = None


def _check(message: Any, tool_name: str, output_type: type[T]) -> _Attempt:
    uses = [b for b in message.content if b.type == "tool_use" and b.name == tool_name]
    if not uses:
        why = render_line(TEXTS, part="no_call", tool=tool_name, stop_reason=message.stop_reason)
        return _Attempt(False, errors=[{"loc": (), "msg": why, "type": "missing_tool_use"}], summary=why)
    raw = uses[0].input
    truncated = message.stop_reason == "max_tokens"
    try:
        return _Attempt(True, value=output_type.model_validate(raw), output=raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        errors = [{"loc": tuple(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        if truncated:
            errors.insert(0, {"loc": (), "msg": render_line(TEXTS, part="cut_off"), "type": "max_tokens"})
        return _Attempt(False, errors=errors, summary=_format_errors(errors), output=raw)


async def structured_output(
    prompt: str,
    output_type: type[T],
    *,
    system: str | None = None,
    context: str | None = None,
    model: str | None = None,
    purpose: str = "",
    spec_id: int | None = None,
    max_tokens: int = 8192,
    feedback: list[str] | None = None,
) -> T:
    """Ask the model for an instance of `output_type`.

    `context` (a large shared text such as the repository digest) goes first in the user turn as
    a cached block; `system` is cached too. `feedback` lines (e.g. review comments on an earlier
    attempt) are appended to the prompt. Raises LLMNotConfigured, LLMOutputInvalid, or the
    anthropic SDK's APIError subclasses."""
    settings = get_settings()
    client = get_client()
    model = model or settings.model_planner
    tool = tool_for(output_type)
    tool_name = tool["name"]

    user: list[dict] = []
    if context:
        user.append({"type": "text", "text": context, "cache_control": EPHEMERAL})
    text = prompt
    if feedback:
        text += "\n\n" + render_line(TEXTS, part="feedback", feedback=list(feedback))
    text += "\n\n" + render_line(TEXTS, part="answer", tool=tool_name)
    user.append({"type": "text", "text": text})
    messages: list[dict] = [{"role": "user", "content": user}]

    request: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": tool_name},
    }
    if system:
        request["system"] = [{"type": "text", "text": system, "cache_control": EPHEMERAL}]

    async def call(msgs: list[dict], tokens: int, attempt: str) -> Any:
        started = time.monotonic()
        label = purpose if attempt == "first" else f"{purpose}:repair"
        try:
            # Streaming: no SDK refusal for long max_tokens, and the read timeout applies per
            # chunk rather than to the whole generation.
            async with client.messages.stream(**{**request, "max_tokens": tokens}, messages=msgs) as stream:
                message = await stream.get_final_message()
        except Exception as exc:
            await _record(model=model, purpose=label, spec_id=spec_id, usage=Usage(), started=started,
                          ok=False, error=_api_error_text(exc))
            raise
        return message, started, label

    message, started, label = await call(messages, max_tokens, "first")
    result = _check(message, tool_name, output_type)
    await _record(model=model, purpose=label, spec_id=spec_id, usage=Usage.of(message.usage), started=started,
                  ok=result.ok, error=None if result.ok else f"invalid output: {result.summary}")
    if result.ok:
        return result.value

    # One repair round: show the model its own call and what was wrong with it.
    log.warning("llm_output_invalid", model=model, purpose=purpose, spec_id=spec_id, errors=result.summary)
    assistant = _assistant_blocks(message.content)
    uses = [b for b in assistant if b["type"] == "tool_use"]
    repair_note = render_line(TEXTS, part="repair", tool=tool_name, summary=result.summary)
    if uses:
        results = [{"type": "tool_result", "tool_use_id": b["id"], "is_error": True, "content": repair_note}
                   for b in uses]
        repair = messages + [{"role": "assistant", "content": assistant}, {"role": "user", "content": results}]
    else:
        note = render_line(TEXTS, part="repair_no_call", tool=tool_name, summary=result.summary)
        repair = messages[:-1] + [{"role": "user", "content": user + [{"type": "text", "text": note}]}]
    tokens = min(max_tokens * 2, 64000) if message.stop_reason == "max_tokens" else max_tokens

    message, started, label = await call(repair, tokens, "repair")
    second = _check(message, tool_name, output_type)
    await _record(model=model, purpose=label, spec_id=spec_id, usage=Usage.of(message.usage), started=started,
                  ok=second.ok, error=None if second.ok else f"invalid output: {second.summary}")
    if second.ok:
        return second.value
    raise LLMOutputInvalid(
        f"model output for {output_type.__name__} failed validation after one repair:\n{second.summary}",
        errors=second.errors, output=second.output,
    )


def usage_totals(spec_id: int) -> dict:
    """Tokens and dollars spent on one spec: for rendering in comments."""
    with session_scope() as session:
        row = session.execute(
            select(
                func.count(LLMCall.id),
                func.coalesce(func.sum(LLMCall.input_tokens), 0),
                func.coalesce(func.sum(LLMCall.output_tokens), 0),
                func.coalesce(func.sum(LLMCall.cache_creation_input_tokens), 0),
                func.coalesce(func.sum(LLMCall.cache_read_input_tokens), 0),
                func.coalesce(func.sum(LLMCall.cost_usd), 0),
                func.coalesce(func.sum(LLMCall.duration_ms), 0),
            ).where(LLMCall.spec_id == spec_id)
        ).one()
        failed = session.execute(
            select(func.count(LLMCall.id)).where(LLMCall.spec_id == spec_id, LLMCall.ok.is_(False))
        ).scalar_one()
    calls, inp, out, cwrite, cread, cost, ms = row
    return {
        "calls": int(calls),
        "failed_calls": int(failed),
        "input_tokens": int(inp),
        "output_tokens": int(out),
        "cache_creation_input_tokens": int(cwrite),
        "cache_read_input_tokens": int(cread),
        "total_tokens": int(inp) + int(out) + int(cwrite) + int(cread),
        "cost_usd": Decimal(str(cost)).quantize(Decimal("0.000001")),
        "duration_ms": int(ms),
    }


__all__ = [
    "LLMError", "LLMNotConfigured", "LLMOutputInvalid", "structured_output", "usage_totals",
    "cost_usd", "price_for", "tool_for", "tool_name_for", "get_client", "PRICES_PER_MTOK",
]
