"""The new /v1 paths answer a wrong method with 405 (and `Allow`) and an unknown sub-path with
404, in the caller's error shape: OpenAI's under /v1/completions and /v1/moderations, Anthropic's
under /v1/messages/count_tokens."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/moderations"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_on_an_openai_path_is_a_405_in_openais_shape(live_gateway, path, method):
    response = httpx.request(method, f"{live_gateway}{path}", headers={"Authorization": "Bearer sk-sym-x"})

    assert response.status_code == 405 and response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed" and path in error["message"]


@pytest.mark.parametrize("method", ["GET", "PATCH"])
def test_wrong_method_on_count_tokens_is_a_405_in_anthropics_shape(live_gateway, method):
    response = httpx.request(method, f"{live_gateway}/v1/messages/count_tokens", headers={"x-api-key": "sk-sym-x"})

    assert response.status_code == 405 and response.headers["allow"] == "POST"
    body = response.json()
    assert body["type"] == "error" and body["error"]["code"] == "method_not_allowed"
    assert response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("path", "anthropic_shape"),
    [("/v1/completions/extra", False), ("/v1/moderations/1", False), ("/v1/messages/count_tokens/x", True)],
)
def test_unknown_sub_path_is_a_404_in_the_callers_shape(live_gateway, path, anthropic_shape):
    response = httpx.post(f"{live_gateway}{path}", json={})

    assert response.status_code == 404
    body = response.json()
    if anthropic_shape:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    else:
        assert body["error"]["code"] == "unknown_url"
