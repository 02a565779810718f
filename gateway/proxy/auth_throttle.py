"""Failed key authentications on /v1, limited per client address.

After AUTH_FAILURE_LIMIT failures (no key, an unknown, revoked or expired key) from one address
within AUTH_FAILURE_WINDOW seconds, that address gets 429 with Retry-After, whatever key it sends,
until the window ends. The address is the peer's, or with TRUSTED_PROXY_COUNT proxies in front the
X-Forwarded-For entry they vouch for (gateway/netpolicy.py).

Cost: a successful authentication does nothing here while no address is blocked, and a dict
lookup while some are. Only a failure touches Redis: one script counts it in a window shared by
every process and machine (`i:<installation>:authfail:<address>`, expiring with its window) and
says whether the address is now over the limit; the process then remembers the block until the
window ends. Another process learns of the block at the first failure it sees from that address
(its count is already over), so across N processes at most N - 1 more failures are answered 401
before every one answers 429. Without REDIS_URL the same script runs in process
(gateway/redis_scripts.py). If Redis does not answer, the failure is not counted and the caller
gets its 401: a limiter outage never locks out clients.

The handler puts each request's ASGI scope in `current_scope`, so `catalog.authenticate()` needs
no request argument; a request served another way (Django's test client) has no scope and is not
limited.
"""

from __future__ import annotations

import logging
import math
import time
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from gateway import installation, netpolicy, redis_scripts
from gateway.proxy.errors import ProxyError

logger = logging.getLogger(__name__)

current_scope: ContextVar[dict[str, Any] | None] = ContextVar("symbiosis_asgi_scope", default=None)

_MAX_BLOCKED = 100_000
_blocked: dict[str, float] = {}  # address -> time.monotonic() when its block ends

_COUNT = redis_scripts.script(
    """
local failures = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {failures, ttl}
"""
)


class TooManyFailedAuthentications(ProxyError):
    """429: this address failed to authenticate too often; nothing it sends is looked at until then."""

    status = 429
    type = "requests"
    code = "too_many_failed_authentications"


def _address() -> str | None:
    scope = current_scope.get()
    if scope is None:
        return None
    client = scope.get("client")
    forwarded = None
    if settings.TRUSTED_PROXY_COUNT:
        values = [value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
        forwarded = b",".join(values).decode("latin-1") if values else None
    return netpolicy.client_address(client[0] if client else None, forwarded)


def _refusal(seconds: float) -> TooManyFailedAuthentications:
    retry = max(1, math.ceil(seconds))
    return TooManyFailedAuthentications(
        f"Too many failed authentications from your address: at most {settings.AUTH_FAILURE_LIMIT} "
        f"in {settings.AUTH_FAILURE_WINDOW} s. Check your API key, then try again in {retry} s.",
        headers={"Retry-After": str(retry)},
    )


def check() -> None:
    """Raise the 429 when this request's address is blocked (in process: no Redis)."""
    if not _blocked:
        return
    address = _address()
    if address is None or (ends := _blocked.get(address)) is None:
        return
    left = ends - time.monotonic()
    if left <= 0:
        del _blocked[address]
        return
    raise _refusal(left)


async def failed(error: ProxyError) -> ProxyError:
    """Count a failed authentication; the error to answer: `error`, or the 429 once over the limit."""
    address = _address()
    if address is None:
        return error
    window_ms = settings.AUTH_FAILURE_WINDOW * 1000
    try:
        key = f"{await installation.aredis_prefix()}authfail:{address}"
        failures, ttl_ms = await redis_scripts.run(_COUNT, [key], [window_ms])
    except (TimeoutError, RedisError, OSError, installation.InstallationUnknown) as exc:
        logger.warning("could not count a failed authentication (%s); it is answered, not limited", type(exc).__name__)
        return error
    if int(failures) < settings.AUTH_FAILURE_LIMIT:
        return error
    seconds = int(ttl_ms) / 1000
    if len(_blocked) >= _MAX_BLOCKED:
        _forget_expired()
    _blocked[address] = time.monotonic() + seconds
    return error if int(failures) == settings.AUTH_FAILURE_LIMIT else _refusal(seconds)


def _forget_expired() -> None:
    now = time.monotonic()
    for address in [address for address, ends in _blocked.items() if ends <= now]:
        del _blocked[address]
    if len(_blocked) >= _MAX_BLOCKED:
        _blocked.clear()


def reset() -> None:
    """Forget this process's blocks and the in-process counters (tests)."""
    _blocked.clear()
    redis_scripts.forget_in_process("i:*:authfail:*")
