"""What one proxied request did, gathered as it runs and recorded when it ends.

Usage comes from the upstream when it reports it. When it does not (some self-hosted servers,
a stream cut short, a client that went away), it is estimated from the text that went each way
(about four ASCII characters a token, one token for every other character, one per entry of a
token array) and flagged as estimated, so no produced token goes unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from billing import budget
from gateway import scrub, telemetry, writable
from gateway.proxy import classifier, guard, limits, logbuffer, ratelimit, router
from gateway.proxy import request as parse
from gateway.proxy.errors import (
    BudgetUnavailable,
    InternalError,
    PermissionDenied,
    ProxyError,
    QuotaExceeded,
    UnreadableAnswer,
)
from gateway.proxy.router import Routed
from gateway.selectors import DeploymentSnapshot, KeySnapshot, ModelSnapshot
from gateway.writable import MAX_COUNT

logger = logging.getLogger("gateway.proxy")
_CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About four ASCII characters a token; any other character (CJK, emoji) a token of its own."""
    if not text:
        return 0
    if text.isascii():
        return math.ceil(len(text) / _CHARS_PER_TOKEN)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / _CHARS_PER_TOKEN) + len(text) - ascii_chars


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
            stack.extend(v for k, v in item.items() if k not in ("role", "type", "id", "index"))
        elif isinstance(item, int) and not isinstance(item, bool):
            tokens += 1
    return tokens + estimate_tokens(" ".join(strings))


@dataclass
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


def usage_from(reported: Any, *, output_optional: bool = False) -> Usage | None:
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


@dataclass
class Trace:
    """One request's record, filled in by the endpoint and the relay, written once at the end."""

    request_id: str
    endpoint: str
    user_agent: str = ""
    presented: str = field(default="", repr=False)  # the key the client sent: scrubbed from what is logged
    started: float = field(default_factory=time.monotonic)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    key: KeySnapshot | None = None
    model: str = ""
    stream: bool = False
    routed: Routed | None = None
    status_code: int = 200
    error_code: str = ""
    usage: Usage | None = None
    prompt_source: Any = None
    guardrails: list[dict[str, Any]] = field(default_factory=list)  # verdicts of the input checks
    output_filters: list[guard.OutputFilter] = field(default_factory=list)
    guard_mapping: dict[str, str] = field(default_factory=dict)  # placeholders of the input's redactions
    delivered: list[str] | None = None  # the answer as output guardrails released it (what the log keeps)
    request_payload: Any = None  # the parsed body, for the log (rendered by policy off the response path)
    response_payload: Any = None  # the answer; a stream's is reassembled from `output_text`
    output_text: list[str] = field(default_factory=list)
    first_token_at: float | None = None
    recorded: bool = False
    ticket: ratelimit.Ticket | None = None
    reservation: budget.Reservation | None = None
    cost: Decimal | None = None
    released: bool = False
    # For telemetry (gateway/telemetry/): read only when it is on
    method: str = "POST"
    traceparent: str | None = None  # the client's W3C trace context, so our spans join its trace
    response_model: str = ""  # the model the upstream says answered
    finish_reasons: tuple[str, ...] = ()

    async def admit(
        self,
        body: dict[str, Any],
        *,
        stream: bool,
        model: ModelSnapshot,
        output: int | None,
        prompt: Callable[[], limits.Prompt],
        choices: int = 1,
        extra_output: int = 0,
        output_field: str = "max_completion_tokens",
    ) -> None:
        """Count the request against its key's and project's rate limits (429 when over), reserving
        its estimated tokens: the prompt's estimate plus its output limit for every choice (and
        `extra_output`, a prediction's). Then, when a hard budget governs it, hold its worst-case
        cost (429 insufficient_quota when it does not fit): the prompt's bound and all that output
        at the highest prices.

        `output` is the limit the request set (gateway/proxy/limits.py), None when it set none:
        then the model's default (or DEFAULT_MAX_TOKENS) is assumed, and when a hold depends on it
        it is written into the body as `output_field`, so that what goes upstream is what was held.
        """
        key = self.key
        assert key is not None
        rate = ratelimit.Limits(
            key_id=key.id,
            project_id=key.project_id,
            key_rpm=key.rpm_limit,
            key_tpm=key.tpm_limit,
            project_rpm=key.project_rpm_limit,
            project_tpm=key.project_tpm_limit,
            key_max_streams=key.max_streams if stream else None,
        )
        limit = output if output is not None else model.default_max_tokens or settings.DEFAULT_MAX_TOKENS
        produced = limit * choices + extra_output
        tokens = self.prompt_tokens_estimate + produced if rate.key_tpm or rate.project_tpm else produced
        hold = await self._budget_hold(key, model, prompt, produced)
        if hold is None:
            self.ticket = await ratelimit.acquire(limits=rate, tokens=tokens, stream=stream)
            return
        # Both checks leave together (one Redis round trip, see gateway/redis_scripts.py): the
        # reservation's task is started first, and its script joins the rate limiter's.
        caps, worst = hold
        reserving = asyncio.ensure_future(budget.reserve(caps, request_id=self.request_id, amount=worst))
        try:
            self.ticket = await ratelimit.acquire(limits=rate, tokens=tokens, stream=stream)
        except BaseException:
            with contextlib.suppress(Exception):  # the rate limit's refusal is the answer
                self.reservation = await reserving  # ... and `release()` frees what was held
            raise
        try:
            self.reservation = await reserving
        except budget.BudgetExceeded as exc:  # `release()` gives the ticket's tokens back
            raise QuotaExceeded(str(exc)) from None
        except budget.BudgetUnavailable as exc:
            raise BudgetUnavailable(str(exc)) from None
        if output is None:
            body[output_field] = limit  # the worst case holds only if the output is capped

    async def _budget_hold(
        self, key: KeySnapshot, model: ModelSnapshot, prompt: Callable[[], limits.Prompt], output: int
    ) -> tuple[budget.Caps, Decimal] | None:
        """The hard budgets this request must fit in and its worst-case cost; None when none governs it."""
        try:
            caps = await budget.caps_for(
                project_id=key.project_id, key_id=key.id, business_unit_id=key.business_unit_id
            )
        except budget.BudgetUnavailable as exc:
            raise BudgetUnavailable(str(exc)) from None
        if not caps.budgeted:
            return None
        try:
            # Soft budgets only alert (no hold), but under any budget an unpriced model is refused.
            worst = await worst_case(key, model, prompt=prompt() if caps.caps else limits.Prompt(0), output=output)
        except limits.Unbounded as exc:
            raise PermissionDenied(
                f"This request has a '{exc.kind}' input, whose tokens cannot be bounded before the call, and a hard "
                f"budget governs it: ask an administrator to set the context window of the model '{model.name}' (and "
                "of its fallbacks), which bounds it.",
                param="messages",
                code="input_not_bounded",
            ) from None
        if worst is None:
            raise PermissionDenied(
                f"The model '{model.name}' (or a model it falls back to) has no price, and this project has a "
                "budget: ask an administrator to set its prices.",
                param="model",
                code="model_not_priced",
            )
        if not caps.caps:
            return None
        return caps, worst

    def finish(self) -> None:
        """The request is over: decide its usage and cost and hand its row (and so its ledger
        debit) to the log writer. Synchronous, so no cancellation can come between the upstream's
        answer and the hand-off; call it before anything that awaits. Idempotent."""
        if self.recorded:
            return
        usage = self.final_usage()
        if (deployment := self._charged_deployment()) is not None:
            self.cost = cost_of(usage, deployment)
        self.record()

    async def release(self) -> None:
        """Settle what was held to what was used: the token reservation, the stream slot and the
        budget reservation (at the request's actual cost; zero when nothing answered). Once.
        Shielded: a cancellation of the caller does not stop it half way."""
        if self.released:
            return
        self.released = True
        self.finish()
        await _shielded(self._settle())

    async def _settle(self) -> None:
        usage = self.final_usage()
        settling = None
        if self.reservation is not None:  # in one Redis round trip with the token correction
            settling = asyncio.ensure_future(budget.settle(self.reservation, cost=self.cost))
        if self.ticket is not None:
            await ratelimit.adjust(self.ticket, actual_tokens=usage.input_tokens + usage.output_tokens)
        if settling is not None:
            await settling
        if self.ticket is not None and self.ticket.holds_stream:
            await ratelimit.release_stream(self.ticket)

    def limit_headers(self, response: HttpResponseBase) -> None:
        if self.ticket is not None:
            for name, value in self.ticket.headers().items():
                response.setdefault(name, value)

    def prompt(self, body: dict[str, Any]) -> None:
        """Keep what is needed to estimate input tokens, should it be needed (read only then)."""
        self.prompt_source = body.get("messages") or body.get("input") or ""
        self.request_payload = body

    @functools.cached_property
    def prompt_tokens_estimate(self) -> int:
        return estimate_prompt(self.prompt_source)

    async def screen_input(self, messages: list[Any]) -> list[Any] | None:
        """The input guardrails on the request's messages: raises GuardrailBlocked for a block;
        returns the redacted messages to send instead, or None when nothing was redacted."""
        rules = self.key.guardrails  # type: ignore[union-attr]
        if not rules.input and rules.max_input_tokens is None:
            return None
        try:
            result = guard.check_input(rules, messages)
        except guard.GuardrailBlocked as exc:
            self.guardrails = getattr(exc, "verdicts", None) or [
                {"where": "input", "check": "size", "action": "block", "count": 1, "kinds": []}
            ]
            raise
        self.guardrails = result.verdicts
        self.guard_mapping = result.mapping
        if action := rules.input.get("classifier"):
            await self._classify(rules, action, result.messages or messages)
        return result.messages

    async def _classify(self, rules: Any, action: str, messages: list[Any]) -> None:
        outcome = await classifier.classify(self.key, rules, messages)  # type: ignore[arg-type]
        verdict = {"where": "input", "check": "classifier", "action": "error", "count": 1, "kinds": []}
        if outcome is None:
            self.guardrails.append(verdict)
            if action == "block":
                raise classifier.unavailable(rules)
            return
        flagged, kinds = outcome
        if not flagged:
            return
        self.guardrails.append(verdict | {"action": action, "kinds": kinds})
        if action == "block":
            what = f" ({', '.join(kinds)})" if kinds else ""
            raise guard.GuardrailBlocked(
                f"Blocked by the guardrail policy of {rules.policy_name}: the input check 'classifier' flagged "
                f"it{what}. Rephrase it, or ask the project owner about the policy."
            )

    def output_filter(self) -> guard.OutputFilter | None:
        """A filter for one answer's text (a choice, a content block), when the policy checks output."""
        rules = self.key.guardrails if self.key is not None else None
        if rules is None or not rules.checks_output:
            return None
        screen = guard.OutputFilter(rules, self.guard_mapping)
        self.output_filters.append(screen)
        if self.delivered is None:
            self.delivered = []
        return screen

    def verdicts(self) -> list[dict[str, Any]]:
        found = list(self.guardrails)
        for screen in self.output_filters:
            found.extend(v for v in screen.verdicts if v not in found)
        return found

    def saw_output(self, text: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if text:
            self.output_text.append(text)

    def saw_finish(self, *reasons: Any) -> None:
        self.finish_reasons += tuple(r for r in reasons if isinstance(r, str) and r)

    def failed(self, status: int, code: str | None) -> None:
        self.status_code, self.error_code = status, code or ""

    def final_usage(self) -> Usage:
        if self.usage is not None:
            return self.usage
        if self._charged_deployment() is None:
            return Usage()  # nothing reached an upstream: nothing to count
        produced = "".join(self.output_text)
        return Usage(input_tokens=self.prompt_tokens_estimate, output_tokens=estimate_tokens(produced), estimated=True)

    def _charged_deployment(self) -> DeploymentSnapshot | None:
        """The deployment whose bill this request carries: the one that answered, or the one it was
        waiting for when it was cancelled (the provider may bill a request it received)."""
        if self.routed is None:
            return None
        return self.routed.deployment or self.routed.calling

    def record(self) -> None:
        """Hand the row to the log buffer (returns at once). Idempotent."""
        if self.recorded:
            return
        self.recorded = True
        now = time.monotonic()
        usage = self.final_usage()
        routed = self.routed or Routed()
        charged = self._charged_deployment()
        key = self.key
        verdicts = self.verdicts() if self.guardrails or self.output_filters else []
        logbuffer.append(
            {
                "request_id": self.request_id,
                "created_at": self.created_at,
                "endpoint": self.endpoint,
                "key_id": key.id if key else None,
                "key_prefix": key.prefix if key else "",
                "project_id": key.project_id if key else None,
                "business_unit_id": key.business_unit_id if key else None,  # for the ledger only
                "member_id": key.created_by_id if key else None,
                "model": writable.text(self.model, 128),
                "answered_model": routed.model.name if routed.model else "",
                "deployment_id": charged.id if charged else None,
                "provider": charged.provider_name if charged else "",
                "attempts": [
                    {
                        "model": a.model,
                        "deployment": a.deployment_id,
                        "provider": a.provider,
                        "status": a.status,
                        "error": writable.text(a.error_code, 60) if a.error_code else a.error_code,
                        "latency_ms": a.latency_ms,
                    }
                    for a in routed.attempts
                ],
                "status_code": self.status_code,
                "error_code": writable.text(self.error_code, 60),
                "stream": self.stream,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cached_tokens": usage.cached_tokens,
                "usage_estimated": usage.estimated,
                "cost": self.cost,
                "latency_ms": round((now - self.started) * 1000, 2),
                "ttft_ms": round((self.first_token_at - self.started) * 1000, 2) if self.first_token_at else None,
                "user_agent": writable.text(self.user_agent, 300),
                "bodies": (
                    key.log_bodies if key else "metadata",
                    self.request_payload,
                    self._response_for_log(),
                    scrub.current().plus(self.presented if key else None),  # a valid key only
                ),
                "guardrails": verdicts,
            }
        )
        if telemetry.enabled:  # spans and metrics, built by the telemetry worker off the response path
            for verdict in verdicts:
                telemetry.count_guardrail_verdict(
                    check=verdict["check"], action=verdict["action"], where=verdict["where"]
                )
            telemetry.record_request(self, usage=usage, ended=now)

    def _response_for_log(self) -> Any:
        if self.response_payload is not None:
            return self.response_payload
        if self.stream and self.delivered is not None:
            return {"stream": True, "content": "".join(self.delivered)}  # as the guardrails released it
        if self.stream and self.output_text:
            return {"stream": True, "content": "".join(self.output_text)}  # reassembled
        return None


_background: set[asyncio.Task[Any]] = set()  # kept referenced until done


def _in_background(work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _shielded(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` to its end even if the caller is cancelled meanwhile (it goes on in the background)."""
    await asyncio.shield(_in_background(work))


View = Callable[..., Awaitable[HttpResponseBase]]


def traced(render: Callable[[ProxyError, str], HttpResponseBase]) -> Callable[[View], View]:
    """Give the request an id and a Trace (`request.trace`), turn every failure into an error
    response drawn by `render`, and record the request log row (streams record in their relay)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            trace = Trace(
                request_id=parse.new_request_id(),
                endpoint=request.path.removeprefix("/v1/")[:40],
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                method=request.method or "POST",
                traceparent=request.META.get("HTTP_TRACEPARENT"),
                presented=parse.presented_key(request) or "",
            )
            request.trace = trace  # type: ignore[attr-defined]
            request.request_id = trace.request_id  # type: ignore[attr-defined]
            telemetry.request_id.set(trace.request_id)  # for the log lines of this request (JSON logs)
            try:
                response = await view(request, *args, **kwargs)
            except ProxyError as exc:
                trace.failed(exc.status, exc.code)
                if trace.usage is None and isinstance(exc, UnreadableAnswer):
                    trace.usage = usage_from(exc.usage)  # answered and billed, though not passed on
                await trace.release()
                response = render(exc, trace.request_id)
                trace.limit_headers(response)
                return response
            except asyncio.CancelledError:  # the client went away (or the server is stopping)
                if not trace.error_code:
                    trace.failed(499, "client_disconnected")
                trace.finish()  # the row first: what the upstream may bill is never lost
                _in_background(trace.release())
                raise
            except Exception as exc:
                # No traceback text: it can carry values. Where it happened is enough to find it.
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                logger.error(
                    "unexpected %s at %s:%s (request %s)",
                    type(exc).__name__,
                    frame.filename,
                    frame.lineno,
                    trace.request_id,
                )
                error = InternalError("The gateway failed unexpectedly; the request id identifies it.")
                trace.failed(error.status, error.code)
                await trace.release()
                return render(error, trace.request_id)
            trace.limit_headers(response)
            if not isinstance(response, StreamingHttpResponse):  # a stream's relay finishes its trace
                await trace.release()
            return response

        return wrapper

    return decorate
