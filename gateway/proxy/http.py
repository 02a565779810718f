"""The one pooled upstream HTTP client per process.

We measured httpx, httpx2, httpx with the aiohttp transport and aiohttp itself as a bare
forwarder under concurrency (README, Performance); aiohttp was fastest and its pool does not
degrade under load, so the adapters use it. Only the adapters see this module.
"""

from __future__ import annotations

import aiohttp
from django.conf import settings

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
        )
        _session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout(),
            auto_decompress=True,
            trust_env=False,  # never route through a proxy from the environment by accident
            skip_auto_headers=("User-Agent",),
        )
    return _session


def timeout() -> aiohttp.ClientTimeout:
    """Per request, so a settings change (tests, reload) applies without a new pool."""
    return aiohttp.ClientTimeout(total=settings.UPSTREAM_TIMEOUT, sock_connect=settings.UPSTREAM_CONNECT_TIMEOUT)


async def close() -> None:
    global _session
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None
