"""The hostile rig: the gateway as production runs it (gunicorn, two uvicorn workers, Postgres,
Redis), a project with a hard budget of 1.00, and deployments priced so that a hold smaller than
what the upstream bills spends past that budget.

The upstream is the mock's greedy tokenizer (`mock-tokenizer-slow=<s>`, tests/mock_upstream.py):
it bills a token per non-ASCII character, generates all that the request allows, and answers
slowly, so a whole burst is admitted before the first request settles. `Rig.send()` fires a
burst at both workers at once and keeps every answer (JSON, or the events of a stream).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from billing import services as billing_services
from billing.models import LedgerEntry
from gateway import services
from gateway.models import Deployment, RequestLog
from tests.bench.procs import Proc
from tests.conftest import Setup, wait_for
from tests.factories import DeploymentFactory, ModelFactory
from tests.mock_upstream import MockUpstream

BUDGET = Decimal("1.00")
PRICE = Decimal(100)  # per million tokens, input and output alike: 0.0001 a token
GREEDY = "mock-tokenizer-slow=1.5"  # seconds: longer than it takes to admit a whole burst
EMBEDDINGS = "embed-test"  # the public name of the embeddings model (its own deployment and prices)


@dataclass
class Answer:
    status: int
    request_id: str
    body: Any  # the parsed JSON, or a stream's events ("[DONE]" kept as the string)
    stream: bool
    cut: str = ""  # the client's error when the body broke off (a stream cut short)
    text: str = ""  # the body as it arrived

    @property
    def error(self) -> Any:
        return self.body.get("error") if isinstance(self.body, dict) else None

    def is_openai_error(self) -> bool:
        """OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`."""
        error = self.error
        return (
            isinstance(error, dict)
            and isinstance(error.get("message"), str)
            and isinstance(error.get("type"), str)
            and {"param", "code"} <= error.keys()
        )

    @property
    def done(self) -> bool:
        return self.stream and "[DONE]" in self.body

    def __repr__(self) -> str:
        cut = f" cut short ({self.cut})" if self.cut else ""
        return f"<{self.status} {self.request_id}{cut} {str(self.body)[:300]}>"


def parse_sse(text: str) -> list[Any]:
    """The `data:` payloads of a stream (OpenAI's or Anthropic's framing), "[DONE]" kept as the string."""
    events: list[Any] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


async def _send_all(url: str, secret: str, requests: list[tuple[str, dict[str, Any]]]) -> list[Answer]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    headers = {"Authorization": f"Bearer {secret}", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:

        async def one(path: str, body: dict[str, Any]) -> Answer:
            # The standard library's encoder: orjson refuses nesting past 254 levels.
            content = json.dumps(body).encode()
            async with client.stream("POST", path, content=content, headers={"content-type": "application/json"}) as r:
                received: list[bytes] = []
                cut = ""
                try:
                    async for data in r.aiter_bytes():
                        received.append(data)
                except httpx.HTTPError as exc:  # what arrived is kept
                    cut = type(exc).__name__
                text = b"".join(received).decode(errors="replace")
                stream = r.headers.get("content-type", "").startswith("text/event-stream")
            try:
                parsed = parse_sse(text) if stream else orjson.loads(text)
            except ValueError:
                parsed = text
            return Answer(r.status_code, r.headers.get("x-request-id", ""), parsed, stream, cut, text)

        return list(await asyncio.gather(*(one(path, body) for path, body in requests)))


@dataclass
class Rig:
    setup: Setup
    url: str  # the gateway's base URL (without /v1)
    proc: Proc  # the gunicorn master
    upstream: MockUpstream

    def send(self, requests: list[tuple[str, dict[str, Any]]]) -> list[Answer]:
        """POST every (path, body) at once, spread over the workers; the answers in order."""
        return asyncio.run(_send_all(self.url, self.setup.secret, requests))

    def burst(self, count: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> list[Answer]:
        return self.send([(path, body)] * count)

    def debits(self) -> list[LedgerEntry]:
        return list(LedgerEntry.objects.filter(project=self.setup.project, kind=LedgerEntry.Kind.USAGE))

    def spend(self) -> Decimal:
        return -sum((d.amount for d in self.debits()), Decimal(0))

    def billed(self) -> list[dict[str, int]]:
        """What the upstream billed for this test's deployments."""
        return self.upstream.state.billed_for(set(Deployment.objects.values_list("upstream_model", flat=True)))

    def billed_tokens(self) -> Counter[tuple[int, int]]:
        """(prompt, completion) of every answer the upstream delivered and billed."""
        return Counter((u["prompt_tokens"], u.get("completion_tokens", 0)) for u in self.billed())

    def billed_cost(self) -> Decimal:
        """What the billed answers cost at the deployments' prices."""
        tokens = sum(u["prompt_tokens"] + u.get("completion_tokens", 0) for u in self.billed())
        return Decimal(tokens) * PRICE / 1_000_000

    def debited_tokens(self) -> Counter[tuple[int, int]]:
        return Counter((d.input_tokens, d.output_tokens) for d in self.debits())

    def wait_for_debits(self, timeout: float = 15.0) -> list[LedgerEntry]:
        """The debits, once there are as many as answers the upstream billed (rows are written in batches)."""
        wait_for(lambda: len(self.debits()) >= len(self.billed()), timeout)
        return self.debits()

    def logged(self, request_ids: set[str], timeout: float = 10.0) -> set[str]:
        """The request ids among `request_ids` that have a request-log row, once all do (or the timeout)."""

        def found() -> set[str]:
            return set(RequestLog.objects.filter(request_id__in=request_ids).values_list("request_id", flat=True))

        wait_for(lambda: found() == request_ids, timeout)
        return found()


def price(deployment: Deployment) -> None:
    services.set_deployment_prices(deployment=deployment, input_price=PRICE, output_price=PRICE)


@pytest.fixture
def budget_limit() -> Decimal:
    """The project's hard monthly budget (a test parametrizes `budget_limit` for another)."""
    return BUDGET


@pytest.fixture
def rig(
    gateway_setup: Setup, upstream: MockUpstream, gunicorn: Callable[..., tuple[Proc, str]], budget_limit: Decimal
) -> Rig:
    """`gpt-test` (chat) and `embed-test` (embeddings) served by the greedy tokenizer, priced, under
    a hard budget (1.00 unless `budget_limit` says otherwise); the gateway in gunicorn with two workers."""
    chat = Deployment.objects.get(model__name=gateway_setup.model)
    chat.upstream_model = GREEDY
    chat.save(update_fields=["upstream_model"])
    embeddings = DeploymentFactory(model=ModelFactory(name=EMBEDDINGS), provider=chat.provider, upstream_model=GREEDY)
    for deployment in (chat, embeddings):
        price(deployment)
    services.update_project(project=gateway_setup.project, allowed_models=[gateway_setup.model, EMBEDDINGS])
    budget = billing_services.set_budget(target=gateway_setup.project, monthly_limit=budget_limit)
    assert budget.hard, "a budget is hard unless said otherwise"
    proc, url = gunicorn(workers=2)
    return Rig(setup=gateway_setup, url=url, proc=proc, upstream=upstream)
