"""Usage and cost: the tokens a request used, as reported by the upstream or estimated, and what
they cost at a deployment's prices.

Usage comes from the upstream when it reports it. When it does not (some self-hosted servers, a
stream cut short, a client that went away), it is estimated from the text that went each way with
the one token estimator of the gateway (`gateway.guardrails.approx_tokens`: about four ASCII
characters a token, one token for every other character; one per entry of a token array) and
flagged as estimated, so no produced token goes unrecorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from gateway.guardrails import approx_tokens
from gateway.proxy import limits, router
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot
from gateway.writable import MAX_COUNT

_SKIPPED_FIELDS = frozenset({"role", "type", "id", "index"})


def estimate_tokens(text: str) -> int:
    """The gateway's one token estimator (shared with the guardrails' size caps)."""
    return approx_tokens(text) if text else 0


def estimate_prompt(value: Any) -> int:
    """The estimate for every string inside a message/content structure (and one token per entry
    of a token array), skipping the fields a tokenizer does not see."""
    tokens = 0
    strings: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k not in _SKIPPED_FIELDS)
        elif isinstance(item, int) and not isinstance(item, bool):
            tokens += 1
    return tokens + estimate_tokens(" ".join(strings))


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False


def _count(value: Any) -> int | None:
    """A reported token count, if believable: a whole number from 0 to what a column holds."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT else None


def anthropic_usage(reported: Any) -> Usage | None:
    """Usage in Anthropic's shape (Messages). Its input tokens exclude cache reads and writes; ours include them."""
    if not isinstance(reported, dict):
        return None
    fresh, output = _count(reported.get("input_tokens")), _count(reported.get("output_tokens"))
    if fresh is None or output is None:
        return None
    read = _count(reported.get("cache_read_input_tokens")) or 0
    written = _count(reported.get("cache_creation_input_tokens")) or 0
    return Usage(input_tokens=fresh + read + written, output_tokens=output, cached_tokens=read)


def as_anthropic(usage: Usage) -> dict[str, int]:
    """Our usage back in Anthropic's terms (to merge a later message_delta's counts into it)."""
    return {
        "input_tokens": usage.input_tokens - usage.cached_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def openai_usage(reported: Any, *, output_optional: bool = False) -> Usage | None:
    """An OpenAI `usage` object, or None when it is absent or not believable (negative, not numbers).
    Embeddings report no completion tokens (`output_optional`)."""
    if not isinstance(reported, dict):
        return None
    prompt, completion = _count(reported.get("prompt_tokens")), _count(reported.get("completion_tokens"))
    if output_optional and "completion_tokens" not in reported:
        completion = 0
    if prompt is None or completion is None:
        return None
    details = reported.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Usage(input_tokens=prompt, output_tokens=completion, cached_tokens=cached or 0)


_PER_MILLION = Decimal(1_000_000)
Prices = tuple[Decimal, Decimal, Decimal]  # input, output, cached input: per million tokens


def _default_prices() -> Prices | None:
    raw_in, raw_out = settings.BILLING_DEFAULT_INPUT_PRICE, settings.BILLING_DEFAULT_OUTPUT_PRICE
    if not raw_in or not raw_out:
        return None
    return Decimal(raw_in), Decimal(raw_out), Decimal(raw_in)


def prices_of(deployment: DeploymentSnapshot) -> Prices | None:
    """The deployment's prices, or the configured default for unpriced ones, or None (no price)."""
    if not deployment.priced:
        return _default_prices()
    cached = deployment.cached_input_price
    return deployment.input_price, deployment.output_price, cached if cached is not None else deployment.input_price  # type: ignore[return-value]


def cost_of(usage: Usage, deployment: DeploymentSnapshot) -> Decimal | None:
    """What the usage costs at the deployment's prices (per million tokens); None when it has none.

    Cached input tokens are part of the input tokens (OpenAI counts them so) and are charged at the
    cached price when one is set.
    """
    prices = prices_of(deployment)
    if prices is None:
        return None
    input_price, output_price, cached_price = prices
    cached = min(usage.cached_tokens, usage.input_tokens)
    total = (usage.input_tokens - cached) * input_price + cached * cached_price + usage.output_tokens * output_price
    return total / _PER_MILLION


async def worst_case(key: KeySnapshot, model: ModelSnapshot, *, prompt: limits.Prompt, output: int) -> Decimal | None:
    """The most the request can cost on any deployment that may answer it (fallbacks included):
    its prompt's bound for that model at the higher of its input and cached-input prices, plus
    its output (all choices) at the output price; None when one of them has no price. Raises
    limits.Unbounded when a model's prompt has no bound."""
    worst = Decimal(0)
    for candidate in await router.models_to_try(key, model):
        for deployment in candidate.deployments:
            prices = prices_of(deployment)
            if prices is None:
                return None
            tokens = prompt.bound(candidate.context_window)
            worst = max(worst, tokens * max(prices[0], prices[2]) + output * prices[1])
    return worst / _PER_MILLION
