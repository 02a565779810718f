"""POST /v1/embeddings through the gateway."""

import httpx
import openai
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_gateway, gateway_setup):
    return openai.OpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0)


def test_embeddings_return_one_vector_per_input(client, upstream):
    result = client.embeddings.create(model="gpt-test", input=["a", "b"], encoding_format="float", dimensions=3)

    assert [d.embedding for d in result.data] == [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    assert result.model == "gpt-test"
    sent = upstream.state.last()
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "upstream-gpt", "input": ["a", "b"], "encoding_format": "float", "dimensions": 3}


async def test_async_embeddings_work(live_gateway, gateway_setup):
    async with openai.AsyncOpenAI(base_url=f"{live_gateway}/v1", api_key=gateway_setup.secret, max_retries=0) as client:
        result = await client.embeddings.create(model="gpt-test", input="hello")

    assert len(result.data) == 1


@pytest.mark.parametrize("value", [None, "", [], [""], [1, "a"], {"text": "x"}])
def test_400_names_input_when_it_is_malformed(live_gateway, gateway_setup, value):
    body = {"model": "gpt-test"} if value is None else {"model": "gpt-test", "input": value}

    response = httpx.post(
        f"{live_gateway}/v1/embeddings", headers={"Authorization": f"Bearer {gateway_setup.secret}"}, json=body
    )

    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_embeddings_404_when_model_is_unknown(client):
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
