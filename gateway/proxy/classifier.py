"""The guardrails' external classifier: a moderation model reached through the gateway's own
providers, behind the same interface as the built-in detectors (a verdict, or a block).

Two kinds: `moderation` calls OpenAI's moderation endpoint (`POST /moderations`, or any server
that speaks it) and reads `results[].flagged` and the flagged categories; `chat` asks a chat model
such as Llama Guard served OpenAI-compatibly, whose answer starts with `safe` or `unsafe`
followed by the violated categories (`S1,S10`). The classifier model is routed like any model
(retries, fallbacks, circuit breaking), but it needs no place on the project's allow-list: the
policy chose it. When it cannot answer, a `block` check refuses the request (503: nothing
unchecked goes through) and a `flag` check lets it pass with an `error` verdict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from gateway import guardrails
from gateway.guardrail_policy import Rules
from gateway.proxy import catalog, router
from gateway.proxy.adapters import get_adapter
from gateway.proxy.errors import ProxyError, ServiceUnavailable
from gateway.proxy.router import Routed
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

_CATEGORY_LINE = re.compile(r"[A-Za-z0-9_, /-]{1,200}")


async def classify(
    key: KeySnapshot, rules: Rules, messages: Sequence[Mapping[str, object]]
) -> tuple[bool, list[str]] | None:
    """(flagged, categories) for the request's text; None when the classifier could not answer."""
    model = await catalog.model_named(rules.classifier_model)
    if model is None:
        return None
    try:
        if rules.classifier_kind == "chat":
            return await _ask_chat(key, model, messages)
        text = "\n".join(part.text for part in guardrails.iter_text_parts(messages))
        return await _ask_moderation(key, model, text)
    except ProxyError:
        return None


async def _ask_moderation(key: KeySnapshot, model: ModelSnapshot, text: str) -> tuple[bool, list[str]] | None:
    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        adapter = get_adapter(deployment.provider_kind)
        return await adapter.moderations(deployment, {"model": deployment.upstream_model, "input": text})  # type: ignore[attr-defined]

    reply = await router.route(key, model, Routed(), call)
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list) or not results:
        return None
    flagged, categories = False, set()
    for result in results:
        if isinstance(result, dict) and result.get("flagged") is True:
            flagged = True
            found = result.get("categories")
            categories |= {name for name, hit in found.items() if hit is True} if isinstance(found, dict) else set()
    return flagged, sorted(categories)


async def _ask_chat(
    key: KeySnapshot, model: ModelSnapshot, messages: Sequence[Mapping[str, object]]
) -> tuple[bool, list[str]] | None:
    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        payload: dict[str, Any] = {"model": deployment.upstream_model, "messages": list(messages), "max_tokens": 20}
        return await get_adapter(deployment.provider_kind).chat(deployment, payload)

    reply = await router.route(key, model, Routed(), call)
    try:
        answer = reply["choices"][0]["message"]["content"].strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    first, _, rest = answer.partition("\n")
    verdict = first.strip().lower()
    if verdict not in ("safe", "unsafe"):
        return None
    categories = rest.strip() if _CATEGORY_LINE.fullmatch(rest.strip() or "x") else ""
    return verdict == "unsafe", sorted(c.strip() for c in categories.split(",") if c.strip())


def unavailable(rules: Rules) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The guardrail policy of {rules.policy_name} needs its classifier ({rules.classifier_model}), "
        "which cannot answer right now; try again shortly."
    )
