"""One /v1 request in flight: who asked, how far it got, and what came back.

The pipeline (gateway/proxy/pipeline.py) makes one `Exchange` per request and the stages write
their results into it: the key, the route, the usage the upstream reported, the text it produced.
`finish()` turns it into the frozen `RequestRecord` (gateway/proxy/record.py) and hands that to
the log writer and telemetry, synchronously, so no cancellation can come between the upstream's
answer and the hand-off; `release()` then settles the admission (shielded from cancellation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway import telemetry
from gateway.proxy import logbuffer
from gateway.proxy.record import RequestRecord, Route
from gateway.proxy.router import Routed
from gateway.proxy.stages.admission import Admission
from gateway.proxy.stages.screening import Screening
from gateway.proxy.stages.usage import Usage, cost_of, estimate_prompt, estimate_tokens
from gateway.selectors import DeploymentSnapshot, KeySnapshot


class Exchange:
    __slots__ = (
        "_prompt_estimate",
        "admission",
        "created_at",
        "endpoint",
        "error_code",
        "finish_reasons",
        "first_token_at",
        "key",
        "method",
        "model",
        "output",
        "presented",
        "prompt_source",
        "record",
        "released",
        "request_id",
        "request_payload",
        "response_model",
        "response_payload",
        "routed",
        "screening",
        "started",
        "status_code",
        "stream",
        "traceparent",
        "usage",
        "user_agent",
    )

    def __init__(
        self,
        request_id: str,
        endpoint: str,
        *,
        method: str = "POST",
        user_agent: str = "",
        traceparent: str | None = None,
        presented: str = "",
    ) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.method = method
        self.user_agent = user_agent
        self.traceparent = traceparent
        self.presented = presented
        self.started = time.monotonic()
        self.created_at = datetime.now(UTC)
        self.key: KeySnapshot | None = None
        self.model = ""
        self.stream = False
        self.routed: Routed | None = None
        self.status_code = 200
        self.error_code = ""
        self.usage: Usage | None = None
        self.prompt_source: Any = None
        self._prompt_estimate: int | None = None
        self.request_payload: Any = None
        self.response_payload: Any = None
        self.output: list[str] = []  # the text the upstream produced, piece by piece
        self.first_token_at: float | None = None
        self.response_model = ""
        self.finish_reasons: tuple[str, ...] = ()
        self.screening: Screening | None = None
        self.admission: Admission | None = None
        self.record: RequestRecord | None = None
        self.released = False

    # --- what the stages and the dialects report ---

    def prompt(self, source: Any, payload: Any) -> None:
        """Keep what is needed to estimate the input tokens, should it be needed (read only then),
        and the body the log keeps."""
        self.prompt_source = source
        self.request_payload = payload

    def prompt_estimate(self) -> int:
        if self._prompt_estimate is None:
            self._prompt_estimate = estimate_prompt(self.prompt_source)
        return self._prompt_estimate

    def saw_output(self, text: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if text:
            self.output.append(text)

    def saw_finish(self, *reasons: Any) -> None:
        self.finish_reasons += tuple(r for r in reasons if isinstance(r, str) and r)

    def failed(self, status: int, code: str | None) -> None:
        self.status_code, self.error_code = status, code or ""

    def limit_headers(self) -> dict[str, str]:
        return self.admission.headers() if self.admission is not None else {}

    # --- the end ---

    def charged(self) -> DeploymentSnapshot | None:
        """The deployment whose bill this request carries: the one that answered, or the one it was
        waiting for when it was cancelled (the provider may bill a request it received)."""
        if self.routed is None:
            return None
        return self.routed.deployment or self.routed.calling

    def final_usage(self) -> Usage:
        if self.usage is not None:
            return self.usage
        if self.charged() is None:
            return Usage()  # nothing reached an upstream: nothing to count
        return Usage(
            input_tokens=self.prompt_estimate(), output_tokens=estimate_tokens("".join(self.output)), estimated=True
        )

    def finish(self) -> RequestRecord:
        """Decide the usage and cost, build the record and hand it to the log writer (and so its
        ledger debit) and to telemetry. Synchronous; idempotent."""
        if self.record is not None:
            return self.record
        ended = time.monotonic()
        usage = self.final_usage()
        charged = self.charged()
        cost: Decimal | None = cost_of(usage, charged) if charged is not None else None
        screening = self.screening
        routed = self.routed
        record = self.record = RequestRecord(
            request_id=self.request_id,
            endpoint=self.endpoint,
            method=self.method,
            user_agent=self.user_agent,
            traceparent=self.traceparent,
            created_at=self.created_at,
            started=self.started,
            ended=ended,
            first_token_at=self.first_token_at,
            key=self.key,
            model=self.model,
            stream=self.stream,
            route=None
            if routed is None
            else Route(
                model=routed.model,
                deployment=routed.deployment,
                charged=charged,
                attempts=tuple(routed.attempts),
                started=routed.started,
                answered=routed.answered,
            ),
            status_code=self.status_code,
            error_code=self.error_code,
            usage=usage,
            cost=cost,
            verdicts=tuple(screening.verdicts()) if screening is not None else (),
            request_payload=self.request_payload,
            response_payload=self.response_payload,
            output_text="".join(self.output),
            delivered="".join(screening.delivered)
            if screening is not None and screening.delivered is not None
            else None,
            response_model=self.response_model,
            finish_reasons=self.finish_reasons,
            presented=self.presented,
        )
        logbuffer.append(record.log_row())
        if telemetry.enabled:  # spans and metrics, built by the telemetry worker off the response path
            for verdict in record.verdicts:
                telemetry.count_guardrail_verdict(
                    check=verdict["check"], action=verdict["action"], where=verdict["where"]
                )
            telemetry.record_request(record)
        return record

    async def release(self) -> None:
        """Finish, then settle what admission held to what was used. Once; shielded: a
        cancellation of the caller does not stop it half way."""
        if self.released:
            return
        self.released = True
        record = self.finish()
        admission = self.admission
        if admission is None or not admission.holding():
            return
        if not admission.settle_locally(record.usage, record.cost):  # in process when it can be
            await _shielded(admission.settle(record.usage, record.cost))


_background: set[asyncio.Task[Any]] = set()  # kept referenced until done


def in_background(work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def _shielded(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` to its end even if the caller is cancelled meanwhile (it goes on in the background)."""
    await asyncio.shield(in_background(work))
