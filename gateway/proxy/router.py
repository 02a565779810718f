"""Choosing a deployment, retrying, failing over, and opening streams safely.

For one request the router walks the requested model and then its fallbacks (each only if the
key may use it). Within a model it picks among the deployments of the best priority whose circuit
is closed, by weight, preferring ones not yet tried in this request. Retryable failures (connect
errors, timeouts, 429, 5xx, malformed answers, a provider rejecting our credentials) are retried
with exponential backoff and jitter, honouring `retry-after` up to a cap, within a total deadline.
A failure that is the request's fault (other 4xx) is returned at once.

A stream is retried only until its first chunk has arrived: the router reads that chunk before
the client's response starts, so nothing is ever sent twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings

from gateway.proxy import breaker, catalog
from gateway.proxy.adapters import ChatStream, get_adapter
from gateway.proxy.errors import BadRequest, ProxyError, UnreadableAnswer, UpstreamError, UpstreamTimeout
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Attempt:
    model: str
    deployment_id: int
    provider: str
    status: int | None  # None: no HTTP status (connect error, timeout)
    error_code: str | None
    latency_ms: float
    # For telemetry's CLIENT spans (gateway/telemetry/genai.py): when (time.monotonic()) and where.
    started: float = 0.0
    ended: float = 0.0
    upstream_model: str = ""
    provider_kind: str = ""
    base_url: str = ""


@dataclass
class Routed:
    """What served the request, and every failed attempt before it."""

    model: ModelSnapshot | None = None
    deployment: DeploymentSnapshot | None = None
    calling: DeploymentSnapshot | None = None  # the deployment a call is waiting for right now
    attempts: list[Attempt] = field(default_factory=list)
    started: float = 0.0  # time.monotonic() when the answering call started, and when it answered
    answered: float = 0.0  # (a stream: its first chunk)


def _retryable(exc: ProxyError) -> bool:
    return isinstance(exc, UpstreamError) or exc.status in (408, 429)


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), settings.ROUTER_RETRY_AFTER_CAP)
        except ValueError:
            pass  # an HTTP date: fall back to our own backoff
    ceiling = min(settings.ROUTER_BACKOFF_MAX, settings.ROUTER_BACKOFF_BASE * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)  # "equal jitter"


def _candidates(model: ModelSnapshot, tried: set[int], dead: set[int]) -> list[DeploymentSnapshot]:
    """Where the next attempt may go, by priority: the best priority with an available deployment
    (closed, or open and due its half-open probe) not yet tried in this request, so lower
    priorities serve when the better ones fail; else a retry among the best available priority.
    Reads only: the probe is claimed for the one deployment picked."""
    available = [
        d for d in model.deployments if catalog.usable(d) and d.id not in dead and breaker.breaker(d.id).available()
    ]
    for priority in sorted({d.priority for d in available}):
        fresh = [d for d in available if d.priority == priority and d.id not in tried]
        if fresh:
            return fresh
    if available:
        best = min(d.priority for d in available)
        return [d for d in available if d.priority == best]
    return []


def _pick(candidates: list[DeploymentSnapshot]) -> DeploymentSnapshot:
    if len(candidates) == 1:
        return candidates[0]
    return random.choices(candidates, weights=[d.weight for d in candidates])[0]


async def models_to_try(key: KeySnapshot, model: ModelSnapshot) -> list[ModelSnapshot]:
    """The model and the fallbacks this key may use, in order: every model a request may be billed at."""
    chain = [model]
    for name in model.fallbacks:
        try:
            fallback = await catalog.resolve(key, name)
        except ProxyError:
            continue  # unknown, disabled or not allowed for this key: skip it
        if fallback not in chain:
            chain.append(fallback)
    return chain


async def route(
    key: KeySnapshot,
    model: ModelSnapshot,
    routed: Routed,
    call: Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[T]],
) -> T:
    deadline = time.monotonic() + settings.ROUTER_DEADLINE
    last: ProxyError | None = None
    backoffs = 0
    for candidate_model in await models_to_try(key, model):
        tried: set[int] = set()
        dead: set[int] = set()
        for attempt in range(settings.ROUTER_MAX_ATTEMPTS):
            candidates = _candidates(candidate_model, tried, dead)
            if not candidates:
                break
            deployment = _pick(candidates)
            circuit = breaker.breaker(deployment.id)
            circuit.claim()
            started = time.monotonic()
            routed.calling = deployment  # a cancellation now leaves a request the provider may bill
            try:
                result = await call(candidate_model, deployment)
            except UnreadableAnswer:
                routed.calling = None
                # It answered and billed: never retried, and charged to this request.
                answered = time.monotonic()
                circuit.succeeded((answered - started) * 1000)
                routed.model, routed.deployment = candidate_model, deployment
                routed.started, routed.answered = started, answered
                raise
            except ProxyError as exc:
                routed.calling = None
                exc.redact(deployment.api_key)  # an upstream may quote the key back: never pass it on
                ended = time.monotonic()
                latency = (ended - started) * 1000
                if not _retryable(exc):
                    circuit.succeeded(latency)  # it answered; the request itself was at fault
                    raise
                circuit.failed(exc.message, latency)
                routed.attempts.append(
                    Attempt(
                        model=candidate_model.name,
                        deployment_id=deployment.id,
                        provider=deployment.provider_name,
                        status=exc.upstream_status,
                        error_code=exc.code,
                        latency_ms=round(latency, 1),
                        started=started,
                        ended=ended,
                        upstream_model=deployment.upstream_model,
                        provider_kind=deployment.provider_kind,
                        base_url=deployment.base_url,
                    )
                )
                tried.add(deployment.id)
                if exc.failover_only:
                    dead.add(deployment.id)
                last = exc
                if time.monotonic() >= deadline:
                    raise
                last_attempt = attempt == settings.ROUTER_MAX_ATTEMPTS - 1
                retry_same = _candidates(candidate_model, tried, dead) and not _untried(candidate_model, tried | dead)
                if retry_same and not last_attempt:
                    # Only deployments that already failed are left: back off before trying again.
                    wait = _backoff(backoffs, exc.headers.get("retry-after"))
                    backoffs += 1
                    if time.monotonic() + wait >= deadline:
                        raise
                    await asyncio.sleep(wait)
                continue
            except BaseException:
                circuit.abandoned()  # cancelled (the client left): neither success nor failure
                raise
            answered = time.monotonic()
            circuit.succeeded((answered - started) * 1000)
            routed.model, routed.deployment, routed.calling = candidate_model, deployment, None
            routed.started, routed.answered = started, answered
            return result
    if last is not None:
        raise last
    raise catalog.unavailable(model)


def _untried(model: ModelSnapshot, tried: set[int]) -> bool:
    return any(
        catalog.usable(d) and d.id not in tried and breaker.breaker(d.id).opened_at is None for d in model.deployments
    )


_MAX_TOKENS_ONLY = frozenset({"openai_compatible", "demo"})


def _payload(body: dict[str, Any], model: ModelSnapshot, deployment: DeploymentSnapshot) -> dict[str, Any]:
    payload = dict(body)
    payload["model"] = deployment.upstream_model
    if deployment.provider_kind in _MAX_TOKENS_ONLY and "max_completion_tokens" in payload:
        # Self-hosted servers know the older name; OpenAI's newer models only the newer one. The
        # body carries one of the two (gateway/proxy/limits.py): the limit the budget held.
        payload["max_tokens"] = payload.pop("max_completion_tokens")
    needs_max_tokens = deployment.provider_kind == "anthropic"  # Anthropic requires max_tokens
    if (
        needs_max_tokens
        and model.default_max_tokens
        and "max_tokens" not in body
        and "max_completion_tokens" not in body
    ):
        payload["max_tokens"] = model.default_max_tokens
    return payload


async def chat(key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed) -> dict:
    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        return await get_adapter(deployment.provider_kind).chat(deployment, _payload(body, candidate, deployment))

    return await route(key, model, routed, call)


async def embeddings(key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed) -> dict:
    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        return await get_adapter(deployment.provider_kind).embeddings(deployment, _payload(body, candidate, deployment))

    return await route(key, model, routed, call)


_KIND_NAMES = {"anthropic": "Anthropic", "azure_openai": "Azure OpenAI", "demo": "the built-in demo provider"}


def supporting(deployment: DeploymentSnapshot, operation: str, what: str) -> Callable[..., Awaitable[Any]]:
    """The adapter's `operation` for this deployment, or a 400 naming the provider that does not
    serve `what` (legacy completions, moderations, ...): the request's fault, never retried."""
    method = getattr(get_adapter(deployment.provider_kind), operation, None)
    if method is None:
        kind = _KIND_NAMES.get(deployment.provider_kind, deployment.provider_kind)
        raise BadRequest(
            f"The model is served by the provider '{deployment.provider_name}' ({kind}), which offers no {what}.",
            param="model",
            code="unsupported_operation",
        )
    return method


async def completions(key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed) -> dict:
    """Legacy text completions (`/completions`): OpenAI, Azure OpenAI and OpenAI-compatible servers."""

    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        send = supporting(deployment, "completions", "legacy text completions (/v1/completions)")
        return await send(deployment, _payload(body, candidate, deployment))

    return await route(key, model, routed, call)


async def open_completions_stream(
    key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed
) -> tuple[dict, AsyncIterator[dict], ChatStream]:
    """A legacy completions stream, opened and its first chunk read (as `open_stream`)."""

    async def call(
        candidate: ModelSnapshot, deployment: DeploymentSnapshot
    ) -> tuple[dict, AsyncIterator[dict], ChatStream]:
        opening = supporting(deployment, "open_completions_stream", "legacy text completions (/v1/completions)")
        return await read_first(deployment, opening(deployment, _payload(body, candidate, deployment)))

    return await route(key, model, routed, call)


async def moderations(key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed) -> dict:
    """A moderation (`/moderations`): OpenAI and OpenAI-compatible servers that speak it."""

    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        send = supporting(deployment, "moderations", "moderation endpoint (/v1/moderations)")
        return await send(deployment, _payload(body, candidate, deployment))

    return await route(key, model, routed, call)


async def open_stream(
    key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed
) -> tuple[dict, AsyncIterator[dict], ChatStream]:
    """Open a stream and read its first chunk; retries and fallbacks happen only before that."""

    async def call(
        candidate: ModelSnapshot, deployment: DeploymentSnapshot
    ) -> tuple[dict, AsyncIterator[dict], ChatStream]:
        adapter = get_adapter(deployment.provider_kind)
        return await read_first(deployment, adapter.open_chat_stream(deployment, _payload(body, candidate, deployment)))

    return await route(key, model, routed, call)


# The provider kinds that serve the Responses API (`POST /responses`) themselves.
RESPONSES_SERVED = frozenset({"openai", "azure_openai"})
Translated = Callable[[ModelSnapshot, DeploymentSnapshot], Awaitable[T]]


async def responses(
    key: KeySnapshot, model: ModelSnapshot, body: dict[str, Any], routed: Routed, *, translated: Translated[dict]
) -> dict:
    """A Responses API request: passed to the upstream's /responses where the provider serves it
    (only `model` replaced), else `translated(candidate, deployment)` (gateway/proxy/dialects/openai_responses.py)."""

    async def call(candidate: ModelSnapshot, deployment: DeploymentSnapshot) -> dict:
        if deployment.provider_kind in RESPONSES_SERVED:
            payload = body | {"model": deployment.upstream_model}
            return await get_adapter(deployment.provider_kind).responses(deployment, payload)  # type: ignore[attr-defined]
        return await translated(candidate, deployment)

    return await route(key, model, routed, call)


async def open_responses_stream(
    key: KeySnapshot,
    model: ModelSnapshot,
    body: dict[str, Any],
    routed: Routed,
    *,
    translated: Translated[ChatStream],
) -> tuple[dict, AsyncIterator[dict], ChatStream, bool]:
    """Open a Responses API stream and read its first event (retries and fallbacks happen only
    before that): the upstream's own where it serves the API (True: its events are Responses
    events), else `translated`'s chat stream (False: chat chunks, to translate)."""

    async def call(
        candidate: ModelSnapshot, deployment: DeploymentSnapshot
    ) -> tuple[dict, AsyncIterator[dict], ChatStream, bool]:
        served = deployment.provider_kind in RESPONSES_SERVED
        if served:
            adapter = get_adapter(deployment.provider_kind)
            payload = body | {"model": deployment.upstream_model, "stream": True}
            opening = adapter.open_responses_stream(deployment, payload)  # type: ignore[attr-defined]
        else:
            opening = translated(candidate, deployment)
        first, rest, upstream = await read_first(deployment, opening)
        return first, rest, upstream, served

    return await route(key, model, routed, call)


async def read_first(
    deployment: DeploymentSnapshot, opening: Awaitable[ChatStream]
) -> tuple[dict, AsyncIterator[dict], ChatStream]:
    """Open a stream and wait for its first item, within the deployment's first-token timeout.
    Called inside a routed call, so a failure here is still retried or failed over."""
    stream: ChatStream | None = None
    try:
        async with asyncio.timeout(deployment.first_token_timeout or None):
            stream = await opening
            items = aiter(stream)
            first = await anext(items)
    except StopAsyncIteration:
        await stream.aclose()  # type: ignore[union-attr]
        raise UpstreamError(
            f"The provider '{deployment.provider_name}' closed the stream without sending anything."
        ) from None
    except TimeoutError:
        if stream is not None:
            await stream.aclose()
        raise UpstreamTimeout(f"The provider '{deployment.provider_name}' sent no first token in time.") from None
    except BaseException:
        if stream is not None:
            await stream.aclose()
        raise
    return first, items, stream


async def idle_guarded(chunks: AsyncIterator[dict], deployment: DeploymentSnapshot) -> AsyncIterator[dict]:
    """The rest of a stream, failing with UpstreamTimeout if the upstream stalls between chunks
    for longer than the deployment's idle timeout; errors never carry the provider's key.

    One timer for the whole stream, not one per chunk (asyncio.timeout costs ~5 us a chunk): a
    chunk only notes when the wait for the next began, and the timer, when it fires, either finds
    the wait older than the timeout (and cancels it, as asyncio.timeout would) or sets itself
    again for when it would be. Time the client takes to read is not the upstream's silence."""
    idle_timeout = deployment.idle_timeout
    if not idle_timeout:
        try:
            async for chunk in chunks:
                yield chunk
        except ProxyError as exc:
            raise exc.redact(deployment.api_key) from None
        return
    loop = asyncio.get_running_loop()
    waiting_since: float | None = None  # when the wait for the next chunk began (None: not waiting)
    waiter: asyncio.Task | None = None
    expired = False

    def check() -> None:
        nonlocal timer, expired
        due = (waiting_since if waiting_since is not None else loop.time()) + idle_timeout
        if waiting_since is not None and waiter is not None and loop.time() >= due:
            expired = True
            waiter.cancel()
        else:
            timer = loop.call_at(due, check)

    timer = loop.call_later(idle_timeout, check)
    try:
        while True:
            waiter, waiting_since = asyncio.current_task(), loop.time()
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if expired and waiter is not None and waiter.uncancel() == 0:  # ours, not the client's
                    raise UpstreamTimeout("The provider stalled mid-stream.") from None
                raise
            except ProxyError as exc:
                raise exc.redact(deployment.api_key) from None
            waiting_since = None
            yield chunk
    finally:
        timer.cancel()
