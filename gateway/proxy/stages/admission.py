"""Admission: a request's rate limits and its budget hold, taken together and released together.

`Admission.admit()` counts the request against its key's and project's rate limits (429 when
over), reserving its estimated tokens: the prompt's estimate plus its output limit for every
choice (and a prediction's tokens). When a hard budget governs it, it also holds its worst-case
cost (429 insufficient_quota when it does not fit): the prompt's bound and all that output at the
highest prices. Far from every limit, both are answered in process from this process's slice of
the window and lease of the budget (gateway/proxy/ratelimit.py, billing/budget.py); near one, both
checks leave together in one Redis round trip (gateway/redis_scripts.py).

`Admission.settle()` gives back what was held beyond what was used, once, shielded from
cancellation: the token reservation corrected to the real usage, the stream slot, and the budget
hold turned into the request's actual cost (zero when nothing answered).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings

from billing import budget
from gateway.proxy import limits, ratelimit
from gateway.proxy.errors import BudgetUnavailable, PermissionDenied, QuotaExceeded
from gateway.proxy.stages.usage import Usage, worst_case
from gateway.selectors import KeySnapshot, ModelSnapshot


class Admission:
    __slots__ = ("key", "request_id", "reservation", "settled", "ticket")

    def __init__(self, key: KeySnapshot, request_id: str) -> None:
        self.key = key
        self.request_id = request_id
        self.ticket: ratelimit.Ticket | None = None
        self.reservation: budget.Reservation | None = None
        self.settled = False

    async def admit(
        self,
        body: dict[str, Any],
        *,
        stream: bool,
        model: ModelSnapshot,
        output: int | None,
        prompt: Callable[[], limits.Prompt],
        prompt_estimate: Callable[[], int],
        choices: int = 1,
        extra_output: int = 0,
        output_field: str = "max_completion_tokens",
    ) -> None:
        """Admit the request or raise the client's error (nothing stays held when it raises and
        `settle()` is called, as the pipeline always does).

        `output` is the limit the request set (gateway/proxy/limits.py), None when it set none:
        then the model's default (or DEFAULT_MAX_TOKENS) is assumed, and when a hold depends on it
        it is written into the body as `output_field`, so that what goes upstream is what was held.
        """
        rate = _rate_limits(self.key, stream=stream)
        limit = output if output is not None else model.default_max_tokens or settings.DEFAULT_MAX_TOKENS
        produced = limit * choices + extra_output
        tokens = prompt_estimate() + produced if rate.key_tpm or rate.project_tpm else produced
        hold = await self._budget_hold(model, prompt, produced)
        local = ratelimit.acquire_locally(limits=rate, tokens=tokens, stream=stream)
        if hold is None:
            self.ticket = local or await ratelimit.acquire(limits=rate, tokens=tokens, stream=stream)
            return
        caps, worst = hold
        if local is not None:  # admitted in process: only the budget may need a round trip
            self.ticket = local
            held = budget.reserve_locally(caps, request_id=self.request_id, amount=worst)
            try:
                self.reservation = held or await budget.reserve(caps, request_id=self.request_id, amount=worst)
            except budget.BudgetExceeded as exc:  # `settle()` gives the ticket's tokens back
                raise QuotaExceeded(str(exc)) from None
            except budget.BudgetUnavailable as exc:
                raise BudgetUnavailable(str(exc)) from None
            if output is None:
                body[output_field] = limit
            return
        # Both go to Redis: the reservation's task is started first, so its script joins the rate
        # limiter's in one round trip.
        reserving = asyncio.ensure_future(budget.reserve(caps, request_id=self.request_id, amount=worst))
        try:
            self.ticket = await ratelimit.acquire(limits=rate, tokens=tokens, stream=stream)
        except BaseException:
            with contextlib.suppress(Exception):  # the rate limit's refusal is the answer
                self.reservation = await reserving  # ... and `settle()` frees what was held
            raise
        try:
            self.reservation = await reserving
        except budget.BudgetExceeded as exc:  # `settle()` gives the ticket's tokens back
            raise QuotaExceeded(str(exc)) from None
        except budget.BudgetUnavailable as exc:
            raise BudgetUnavailable(str(exc)) from None
        if output is None:
            body[output_field] = limit  # the worst case holds only if the output is capped

    async def admit_free(self) -> None:
        """Admit a request no provider bills (token counting): one request against the
        requests-per-minute limits, no tokens, no budget hold (429 when over a limit)."""
        rate = _rate_limits(self.key, stream=False)
        self.ticket = ratelimit.acquire_locally(limits=rate, tokens=0, stream=False) or await ratelimit.acquire(
            limits=rate, tokens=0, stream=False
        )

    async def _budget_hold(
        self, model: ModelSnapshot, prompt: Callable[[], limits.Prompt], output: int
    ) -> tuple[budget.Caps, Decimal] | None:
        """The hard budgets this request must fit in and its worst-case cost; None when none governs it."""
        key = self.key
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

    def holding(self) -> bool:
        """Whether settling has anything to give back: a budget hold, a stream slot, or tokens
        counted against a tokens-per-minute limit (requests-per-minute counts stay as they are)."""
        ticket = self.ticket
        if self.settled:
            return False
        if self.reservation is not None:
            return True
        return ticket is not None and bool(ticket.holds_stream or ticket.limits.key_tpm or ticket.limits.project_tpm)

    def settle_locally(self, usage: Usage, cost: Decimal | None) -> bool:
        """Settle what can be settled with no round trip (holds taken from this process's slices
        and leases); True when nothing is left for `settle()`."""
        if self.settled:
            return True
        done = True
        if self.reservation is not None and not budget.settle_locally(self.reservation, cost=cost):
            done = False
        ticket = self.ticket
        if ticket is not None:
            if not ratelimit.adjust_locally(ticket, actual_tokens=usage.input_tokens + usage.output_tokens):
                done = False
            if ticket.holds_stream:
                done = False
        self.settled = done
        return done

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        """Settle what was held to what was used (see the module's docstring). Once; what
        `settle_locally()` did already is not done twice."""
        if self.settled:
            return
        self.settled = True
        settling = None
        if self.reservation is not None:  # in one Redis round trip with the token correction
            settling = asyncio.ensure_future(budget.settle(self.reservation, cost=cost))
        if self.ticket is not None:
            await ratelimit.adjust(self.ticket, actual_tokens=usage.input_tokens + usage.output_tokens)
        if settling is not None:
            await settling
        if self.ticket is not None and self.ticket.holds_stream:
            await ratelimit.release_stream(self.ticket)

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of the limits that apply (none before admission)."""
        return self.ticket.headers() if self.ticket is not None else {}


def _rate_limits(key: KeySnapshot, *, stream: bool) -> ratelimit.Limits:
    return ratelimit.Limits(
        key_id=key.id,
        project_id=key.project_id,
        key_rpm=key.rpm_limit,
        key_tpm=key.tpm_limit,
        project_rpm=key.project_rpm_limit,
        project_tpm=key.project_tpm_limit,
        key_max_streams=key.max_streams if stream else None,
    )
