import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_chat_completion_reaches_upstream_when_key_is_valid(live_gateway, gateway_setup, upstream):
    response = httpx.post(
        f"{live_gateway}/v1/chat/completions",
        headers={"Authorization": f"Bearer {gateway_setup.secret}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "gpt-test"
    assert upstream.state.last().body["model"] == "upstream-gpt"
