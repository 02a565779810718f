"""Azure OpenAI behind /v1: the official OpenAI SDK against the live gateway and a mock Azure resource."""

from types import SimpleNamespace

import httpx
import openai
import pytest

from gateway import crypto
from gateway.models import Provider
from gateway.proxy.adapters.azure import DEFAULT_API_VERSION, azure_url
from gateway.selectors import DeploymentSnapshot
from tests.factories import ProviderFactory
from tests.mock_azure import API_KEY

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


@pytest.fixture
def gpt(azure_setup):
    azure_setup.serve("gpt-azure", "my-gpt4o-deployment")
    return azure_setup.client()


def _ask(client, model="gpt-azure", content="hi", **extra):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **extra)


# --- addresses (no network) ---


def _deployment(base_url: str, upstream_model: str = "gpt4o prod") -> DeploymentSnapshot:
    return DeploymentSnapshot(
        id=1,
        provider_id=1,
        provider_name="azure",
        provider_kind="azure_openai",
        provider_approved=True,
        base_url=base_url,
        upstream_model=upstream_model,
    )


@pytest.mark.parametrize("base_url", ["https://res.openai.azure.com", "https://res.openai.azure.com/openai/"])
def test_deployment_style_url_names_deployment_and_default_api_version(base_url):
    assert azure_url(_deployment(base_url), "chat/completions") == (
        f"https://res.openai.azure.com/openai/deployments/gpt4o%20prod/chat/completions?api-version={DEFAULT_API_VERSION}"
    )


def test_api_version_comes_from_the_deployment_when_it_has_one():
    deployment = SimpleNamespace(
        base_url="https://res.openai.azure.com", upstream_model="emb", api_version="2025-04-01-preview"
    )

    assert azure_url(deployment, "embeddings").endswith("/deployments/emb/embeddings?api-version=2025-04-01-preview")


def test_v1_base_url_uses_the_v1_surface_without_api_version():
    assert azure_url(_deployment("https://res.openai.azure.com/openai/v1/"), "chat/completions") == (
        "https://res.openai.azure.com/openai/v1/chat/completions"
    )


# --- answers ---


def test_chat_completion_reaches_deployment_url_with_api_key_header(gpt, azure_upstream):
    completion = _ask(gpt, content="hello")

    assert completion.model == "gpt-azure"
    assert completion.choices[0].message.content == "echo: hello"
    sent = azure_upstream.state.last()
    assert sent.path == f"/openai/deployments/my-gpt4o-deployment/chat/completions?api-version={DEFAULT_API_VERSION}"
    assert sent.headers["api-key"] == API_KEY
    assert "Authorization" not in sent.headers


def test_azure_filter_annotations_pass_through(azure_setup, gpt):
    response = httpx.post(
        f"{azure_setup.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {azure_setup.secret}"},
        json={"model": "gpt-azure", "messages": [{"role": "user", "content": "x"}]},
    )

    body = response.json()
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert "content_filter_results" in body["choices"][0]


def test_finish_reason_content_filter_passes_through_untouched(azure_setup):
    client = azure_setup.client()
    azure_setup.serve("gpt-filtered", "azure-finish-filter")

    completion = _ask(client, model="gpt-filtered")
    chunks = list(_ask(client, model="gpt-filtered", stream=True))

    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.content == "It began"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "content_filter"


def test_tool_calls_come_back(gpt, azure_upstream):
    message = _ask(gpt, tools=[WEATHER]).choices[0].message

    assert message.tool_calls[0].function.name == "weather"
    assert azure_upstream.state.last().body["tools"] == [WEATHER]


def test_stream_relays_chunks_and_hides_usage_when_not_asked(gpt, azure_upstream):
    chunks = list(_ask(gpt, content="one two", stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two "
    assert all(c.usage is None for c in chunks)
    assert azure_upstream.state.last().body["stream_options"] == {"include_usage": True}


def test_stream_ends_with_usage_when_asked(gpt):
    chunks = list(_ask(gpt, stream=True, stream_options={"include_usage": True}))

    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (11, 7)


def test_embeddings_reach_the_deployment(azure_setup, azure_upstream):
    azure_setup.serve("embed", "my-embedding-deployment")

    result = azure_setup.client().embeddings.create(model="embed", input=["a", "b"])

    assert [d.embedding for d in result.data] == [[0.1, 0.2, 0.3]] * 2
    assert azure_upstream.state.last().path.startswith("/openai/deployments/my-embedding-deployment/embeddings?")


def test_v1_surface_sends_model_in_body_and_no_api_version(azure_setup, azure_upstream):
    v1 = ProviderFactory(name="azure-v1", kind=Provider.Kind.AZURE_OPENAI, base_url=f"{azure_upstream.url}/openai/v1")
    azure_setup.serve("gpt-v1", "gpt-4o-mini", provider=v1)

    completion = _ask(azure_setup.client(), model="gpt-v1", content="v1")

    assert completion.choices[0].message.content == "echo: v1"
    sent = azure_upstream.state.last()
    assert sent.path == "/openai/v1/chat/completions"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.headers["api-key"] == API_KEY


# --- errors ---


def test_content_filter_400_passes_through_with_its_code_and_a_clear_message(azure_setup):
    azure_setup.serve("gpt-strict", "azure-content-filter")

    with pytest.raises(openai.BadRequestError) as caught:
        _ask(azure_setup.client(), model="gpt-strict")

    error = caught.value
    assert error.code == "content_filter"
    assert error.param == "prompt"
    assert "content management policy" in error.message
    assert error.message.endswith("Filtered categories: violence.")


def test_429_keeps_retry_after(azure_setup):
    azure_setup.serve("gpt-busy", "azure-status-429")

    with pytest.raises(openai.RateLimitError) as caught:
        _ask(azure_setup.client(), model="gpt-busy")

    assert caught.value.response.headers["retry-after"] == "11"


def test_rejected_api_key_becomes_502_without_echo(azure_setup, azure_upstream):
    wrong = ProviderFactory(
        name="azure-wrong-key",
        kind=Provider.Kind.AZURE_OPENAI,
        base_url=azure_upstream.url,
        api_key_encrypted=crypto.encrypt_secret("sk-wrong-azure-key"),
    )
    azure_setup.serve("gpt-locked", "my-gpt4o-deployment", provider=wrong)

    with pytest.raises(openai.APIStatusError) as caught:
        _ask(azure_setup.client(), model="gpt-locked")

    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "sk-wrong-azure-key" not in caught.value.response.text
