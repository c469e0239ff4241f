"""What model calls cost: prices per model and the usage they are applied to.

Kept apart from app/llm/structured.py so the web process's model proxy (app/agent/model_proxy.py) can price a call
without loading the Anthropic SDK.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Dollars per million tokens: (input, output). Cache writes (5 min TTL) cost 1.25x input,
# cache reads 0.1x input. Matched by longest prefix so dated ids ("...-20250929") resolve.
PRICES_PER_MTOK: dict[str, tuple[Decimal, Decimal]] = {
    "claude-opus-4-5": (Decimal("5"), Decimal("25")),
    "claude-opus-4-1": (Decimal("15"), Decimal("75")),
    "claude-opus-4": (Decimal("15"), Decimal("75")),
    "claude-sonnet-4-5": (Decimal("3"), Decimal("15")),
    "claude-sonnet-4": (Decimal("3"), Decimal("15")),
    "claude-3-7-sonnet": (Decimal("3"), Decimal("15")),
    "claude-haiku-4-5": (Decimal("1"), Decimal("5")),
    "claude-3-5-haiku": (Decimal("0.80"), Decimal("4")),
    "claude-3-haiku": (Decimal("0.25"), Decimal("1.25")),
}
# Unknown models are priced like Sonnet: an overestimate for small models, never zero.
DEFAULT_PRICE_PER_MTOK: tuple[Decimal, Decimal] = (Decimal("3"), Decimal("15"))
CACHE_WRITE_MULTIPLIER = Decimal("1.25")
CACHE_READ_MULTIPLIER = Decimal("0.1")


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def of(cls, usage: Any) -> "Usage":
        """From the SDK's usage object, or a usage mapping as the API and the CLI's messages carry it."""
        if usage is None:
            return cls()
        get = usage.get if isinstance(usage, dict) else (lambda name, default: getattr(usage, name, default))
        return cls(**{name: int(get(name, 0) or 0) for name in (
            "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")})


def price_for(model: str) -> tuple[Decimal, Decimal]:
    best = ""
    for prefix in PRICES_PER_MTOK:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return PRICES_PER_MTOK[best] if best else DEFAULT_PRICE_PER_MTOK


def cost_usd(model: str, usage: Usage) -> Decimal:
    price_in, price_out = price_for(model)
    dollars = (
        usage.input_tokens * price_in
        + usage.cache_creation_input_tokens * price_in * CACHE_WRITE_MULTIPLIER
        + usage.cache_read_input_tokens * price_in * CACHE_READ_MULTIPLIER
        + usage.output_tokens * price_out
    ) / Decimal(1_000_000)
    return dollars.quantize(Decimal("0.000001"))
