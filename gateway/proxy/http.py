"""The one pooled upstream HTTP client per process.

We measured httpx, httpx2, httpx with the aiohttp transport and aiohttp itself as a bare
forwarder under concurrency (README, Performance); aiohttp was fastest and its pool does not
degrade under load, so the adapters use it. Only the adapters see this module.
"""

from __future__ import annotations

import functools

import aiohttp
from django.conf import settings

from gateway import netpolicy
from gateway.selectors import DeploymentSnapshot

_session: aiohttp.ClientSession | None = None


def session() -> aiohttp.ClientSession:
    global _session
    if _session is None or _session.closed:
        connector = aiohttp.TCPConnector(
            limit=settings.UPSTREAM_MAX_CONNECTIONS,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
            # Every new connection's address, after DNS, against the network policy (metadata,
            # loopback, link-local, private; gateway/netpolicy.py): pooled connections pay nothing.
            socket_factory=netpolicy.guarded_socket,
        )
        _session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout(),
            auto_decompress=True,
            trust_env=False,  # never route through a proxy from the environment by accident
            skip_auto_headers=("User-Agent",),
        )
    return _session


def timeout(deployment: DeploymentSnapshot | None = None, *, stream: bool = False) -> aiohttp.ClientTimeout:
    """The deployment's timeouts, else the settings'. Read per request (cached by value), so a
    settings change applies without a new pool.

    A non-streaming answer must start within `first_token_timeout` (aiohttp's read timeout);
    a stream's first chunk and idle gaps are timed by the router instead.
    """
    return _timeout(
        (deployment and deployment.total_timeout) or settings.UPSTREAM_TIMEOUT,
        (deployment and deployment.connect_timeout) or settings.UPSTREAM_CONNECT_TIMEOUT,
        None if stream or deployment is None else deployment.first_token_timeout,
    )


@functools.lru_cache(maxsize=256)
def _timeout(total: float, connect: float, read: float | None) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total, sock_connect=connect, sock_read=read)


async def close() -> None:
    global _session
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None
