"""Fault injection: public models served by scripted deployments of the mock upstream.

Each deployment is named `mock-script-<script>@<label>` upstream, so the mock plays the steps of
`upstream.state.scripts[<script>]` (see tests/mock_upstream.py) and its recorded requests tell the
deployments apart: `faults.calls("a")` is how many attempts deployment `a` received.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import orjson
import pytest

from gateway import services
from gateway.models import Deployment, Provider
from tests.conftest import Setup
from tests.mock_upstream import MockUpstream

PROMPT = "tell me about the weather"  # the mock echoes it: "echo: tell me about the weather "
ANSWER_WORDS = ["echo: ", "tell ", "me ", "about ", "the ", "weather "]
PROMPT_TOKENS = 11  # what the mock reports for every prompt


@dataclass(frozen=True)
class Deployed:
    """One deployment to create: `label` plays script `script` (by default its own label)."""

    label: str
    script: str = ""
    priority: int = 0
    weight: int = 1
    first_token_timeout: float | None = None
    idle_timeout: float | None = None
    total_timeout: float | None = None

    @property
    def upstream_model(self) -> str:
        return f"mock-script-{self.script or self.label}@{self.label}"


@dataclass
class SSE:
    """What a raw streaming client received."""

    response: httpx.Response
    events: list[Any]  # parsed `data:` payloads, "[DONE]" kept as the string

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def done(self) -> bool:
        return "[DONE]" in self.events

    @property
    def chunks(self) -> list[dict]:
        return [e for e in self.events if isinstance(e, dict) and "error" not in e]

    @property
    def errors(self) -> list[dict]:
        return [e["error"] for e in self.events if isinstance(e, dict) and "error" in e]

    @property
    def text(self) -> str:
        return "".join((c["choices"][0]["delta"].get("content") or "") for c in self.chunks if c.get("choices"))


@dataclass
class Faults:
    setup: Setup
    gateway: str
    upstream: MockUpstream
    provider: Provider  # what `serve` deploys on
    sdk: openai.OpenAI
    http: httpx.Client

    def script(self, name: str, *steps: str) -> None:
        self.upstream.state.scripts[name] = list(steps)

    def serve(
        self, name: str, *deployed: Deployed, fallbacks: tuple[str, ...] = (), allow: bool = True
    ) -> dict[str, Deployment]:
        """A public model served by these deployments (by label), on the project's allow-list if `allow`."""
        specs = [
            services.DeploymentSpec(
                provider=self.provider,
                upstream_model=d.upstream_model,
                priority=d.priority,
                weight=d.weight,
                first_token_timeout=d.first_token_timeout,
                idle_timeout=d.idle_timeout,
                total_timeout=d.total_timeout,
            )
            for d in deployed
        ]
        model = services.create_model(name=name, deployments=specs, fallbacks=fallbacks)
        if allow:
            allowed = [m.name for m in self.setup.project.allowed_models.all()] + [name]
            services.update_project(project=self.setup.project, allowed_models=allowed)
        return {d.upstream_model.rsplit("@", 1)[1]: d for d in Deployment.objects.filter(model=model)}

    def attempts(self) -> list[str]:
        """The labels of the deployments the upstream saw, in order."""
        return [str(r.body.get("model", "")).rsplit("@", 1)[-1] for r in self.upstream.state.requests]

    def calls(self, label: str) -> int:
        """Attempts the deployment labelled `label` received."""
        return self.attempts().count(label)

    def hung_up_on(self, label: str, timeout: float = 3.0) -> bool:
        """Did the gateway drop its connection to deployment `label` (so the upstream stops generating)?"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(model.endswith(f"@{label}") for model in self.upstream.state.disconnects):
                return True
            time.sleep(0.01)
        return False

    def ask(self, model: str, **extra: Any) -> Any:
        """Ask through the OpenAI SDK (no retries of its own)."""
        return self.sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}], **extra)

    def post(self, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], **extra}
        return self.http.post("/chat/completions", json=body, headers={"Authorization": f"Bearer {self.setup.secret}"})

    def stream(self, model: str, **extra: Any) -> SSE:
        """Stream with httpx, keeping every event as sent (the SDK hides a missing [DONE])."""
        response = self.post(model, stream=True, **extra)
        events: list[Any] = []
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            for block in response.text.split("\n\n"):
                if block.startswith("data: "):
                    data = block.removeprefix("data: ")
                    events.append(data if data == "[DONE]" else orjson.loads(data))
        return SSE(response, events)


@pytest.fixture(autouse=True)
def _rows_written_at_once(settings):  # type: ignore[no-untyped-def]
    """Every request-log row is flushed as soon as it is appended, so `logged()` returns quickly."""
    settings.LOG_FLUSH_BATCH = 1


@pytest.fixture(scope="session")
def _clients(live_gateway: str) -> Iterator[tuple[openai.OpenAI, httpx.Client]]:
    """One SDK and one httpx client for the session: building one (its SSL context) costs more than a request."""
    with (
        openai.OpenAI(base_url=f"{live_gateway}/v1", api_key="unset", max_retries=0) as sdk,
        httpx.Client(base_url=f"{live_gateway}/v1", timeout=30) as http,
    ):
        yield sdk, http


@pytest.fixture
def faults(
    gateway_setup: Setup, live_gateway: str, upstream: MockUpstream, _clients: tuple[openai.OpenAI, httpx.Client]
) -> Faults:
    provider = services.create_provider(
        name="scripted",
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url=upstream.url,
        api_key="sk-scripted",
        approved=True,
    )
    sdk, http = _clients
    return Faults(
        setup=gateway_setup,
        gateway=live_gateway,
        upstream=upstream,
        provider=provider,
        sdk=sdk.with_options(api_key=gateway_setup.secret),  # shares the session's connection pool
        http=http,
    )
