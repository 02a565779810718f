"""The HTTP exchange every adapter makes: POST a JSON body, take a 200 or turn the answer into
the error the client sees, and read a JSON object back — with the body capped, redirects
refused and transport failures mapped, the same way for every provider."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import aiohttp
import orjson
from django.conf import settings

from gateway import netpolicy
from gateway.proxy import http
from gateway.proxy.errors import ProxyError, UpstreamError, UpstreamTimeout
from gateway.proxy.sse import SSEProtocolError
from gateway.selectors import DeploymentSnapshot

logger = logging.getLogger(__name__)


async def read_capped(response: aiohttp.ClientResponse) -> bytes:
    limit = settings.UPSTREAM_MAX_RESPONSE_BYTES
    if response.content_length is not None and response.content_length > limit:
        raise UpstreamError("The upstream response is larger than the gateway accepts.")
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise UpstreamError("The upstream response is larger than the gateway accepts.")
        parts.append(chunk)
    return b"".join(parts)


def transport_failure(exc: BaseException, deployment: DeploymentSnapshot) -> UpstreamError:
    provider = deployment.provider_name
    if (reason := netpolicy.refused_by_policy(exc)) is not None:
        # The admin's URL names an address the gateway may not reach (gateway/netpolicy.py): the
        # operator's log says which; the client learns nothing of the internal network.
        logger.warning(
            "refused to connect to provider %r: %s (UPSTREAM_ALLOW_PRIVATE_NETWORKS=true allows private networks)",
            provider,
            reason,
        )
        error = UpstreamError(
            f"The provider '{provider}' was not contacted: its address is not allowed by the gateway's network policy."
        )
        error.failover_only = True  # a configuration error: try another deployment, not this one again
        return error
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"The provider '{provider}' did not answer in time.")
    return UpstreamError(f"The provider '{provider}' could not be reached ({type(exc).__name__}).")


@contextlib.contextmanager
def mid_stream_failures() -> Iterator[None]:
    """Around reading an open stream: its transport and framing failures, as the client's errors."""
    try:
        yield
    except SSEProtocolError as exc:
        raise UpstreamError(f"The provider's stream is malformed: {exc}.") from None
    except TimeoutError:
        raise UpstreamTimeout("The provider stopped sending mid-stream.") from None
    except aiohttp.ClientError:
        raise UpstreamError("The connection to the provider broke mid-stream.") from None


# (status, body, response headers) -> the error for the client
Failure = Callable[[int, bytes, Mapping[str, str]], ProxyError]


async def open_post(
    deployment: DeploymentSnapshot,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    *,
    stream: bool,
    failure: Failure,
) -> aiohttp.ClientResponse:
    """POST `payload`; the open response when the upstream answers 200, else `failure`'s error."""
    try:
        response = await http.session().post(
            url,
            data=orjson.dumps(payload),
            headers=headers,
            allow_redirects=False,
            timeout=http.timeout(deployment, stream=stream),
        )
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_failure(exc, deployment) from None
    if response.status == 200:
        return response
    raise failure(response.status, await _body(response, deployment), response.headers)


async def _body(response: aiohttp.ClientResponse, deployment: DeploymentSnapshot) -> bytes:
    """The whole body (capped), read off a response whose connection then goes back to the pool."""
    try:
        return await read_capped(response)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_failure(exc, deployment) from None
    finally:
        response.release()


async def read_json(response: aiohttp.ClientResponse, deployment: DeploymentSnapshot) -> dict[str, Any]:
    """The JSON object a 200 response carries (its body capped); the connection goes back to the pool."""
    body = await _body(response, deployment)
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"The provider '{deployment.provider_name}' answered with malformed JSON.") from None
    if not isinstance(reply, dict):
        raise UpstreamError(f"The provider '{deployment.provider_name}' answered with an unexpected body.")
    return reply
