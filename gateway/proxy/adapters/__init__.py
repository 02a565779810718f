"""Provider adapters: one per provider kind, all speaking OpenAI's shapes to the endpoints.

An adapter takes an OpenAI-shaped request body (with `model` already set to the upstream name)
and returns OpenAI-shaped dicts; a provider with another wire format (Anthropic) translates
inside its adapter. Adapters raise gateway.proxy.errors.UpstreamError and its subclasses only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gateway.selectors import DeploymentSnapshot


class ChatStream(Protocol):
    """An open upstream stream: iterate OpenAI chat.completion.chunk dicts, then aclose()."""

    def __aiter__(self) -> AsyncIterator[dict]: ...

    async def aclose(self) -> None: ...


class ProviderAdapter(Protocol):
    async def chat(self, deployment: DeploymentSnapshot, payload: dict) -> dict: ...

    async def open_chat_stream(self, deployment: DeploymentSnapshot, payload: dict) -> ChatStream: ...

    async def embeddings(self, deployment: DeploymentSnapshot, payload: dict) -> dict: ...


def adapter_for(kind: str) -> ProviderAdapter:
    from gateway.proxy.adapters import anthropic, azure, demo, openai

    adapters: dict[str, ProviderAdapter] = {
        "openai": openai.OpenAIAdapter(default_base_url="https://api.openai.com/v1"),
        "openai_compatible": openai.OpenAIAdapter(default_base_url=""),
        "anthropic": anthropic.AnthropicAdapter(),
        "azure_openai": azure.AzureOpenAIAdapter(),
        "demo": demo.DemoAdapter(),
    }
    _ADAPTERS.update(adapters)
    return _ADAPTERS[kind]


_ADAPTERS: dict[str, ProviderAdapter] = {}


def get_adapter(kind: str) -> ProviderAdapter:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        from gateway.proxy.errors import ServiceUnavailable

        try:
            return adapter_for(kind)
        except KeyError:
            raise ServiceUnavailable(f"Providers of kind '{kind}' are not supported by this gateway yet.") from None
    return adapter
