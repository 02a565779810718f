"""Each test runs against both backends: the run's Redis (REDIS_URL) and the in-process fallback.

Tests use a random project id, so their Redis keys never meet another test's (or another
xdist worker's); the fixture deletes them afterwards instead of flushing the database.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from django.conf import settings

from gateway import installation
from gateway.proxy import ratelimit

# The run's own Redis (REDIS_URL, as `make test` is given it), or RATELIMIT_TEST_REDIS_URL. Neither
# on the embedded default: the Redis half is skipped rather than written into a Redis server the
# developer may use for something else.
REDIS_TEST_URL = os.environ.get("RATELIMIT_TEST_REDIS_URL") or os.environ.get("REDIS_URL", "")


def _redis_answers() -> bool:
    if not REDIS_TEST_URL:
        return False
    try:
        with redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _forget(project_id: int) -> None:
    with redis.Redis.from_url(REDIS_TEST_URL) as client:
        keys = list(client.scan_iter(match=f"{installation.redis_prefix()}rl:{{p{project_id}}}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture
def project_id() -> int:
    return secrets.randbits(48)


@pytest.fixture(autouse=True)
async def _close_the_client() -> AsyncIterator[None]:
    """Each test has its own event loop; the client's connections belong to it."""
    yield
    await ratelimit.close()


@pytest.fixture
def redis_url(settings, project_id: int) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if not _redis_answers():
        pytest.skip(f"needs a Redis server (REDIS_URL or RATELIMIT_TEST_REDIS_URL; got {REDIS_TEST_URL!r})")
    settings.REDIS_URL = REDIS_TEST_URL
    yield REDIS_TEST_URL
    _forget(project_id)


# Not "redis": the root conftest skips tests with that keyword unless REDIS_URL is set at start.
@pytest.fixture(params=["redis-server", "in-process"])
def backend(request: pytest.FixtureRequest, settings) -> str:  # type: ignore[no-untyped-def]
    if request.param == "redis-server":
        request.getfixturevalue("redis_url")
    else:
        settings.REDIS_URL = ""
        ratelimit.reset()
    return request.param


class SilentPort:
    """A port that completes TCP handshakes and never answers; counts who connected."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                accepted, _ = self._listener.accept()
            except BlockingIOError:
                return count
            accepted.close()
            count += 1

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def silent_port() -> Iterator[SilentPort]:
    port = SilentPort()
    yield port
    port.close()


@pytest.fixture
def closed_redis(settings) -> str:  # type: ignore[no-untyped-def]
    """REDIS_URL points at a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    return settings.REDIS_URL


@pytest.fixture
def spawn(redis_url: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start separate Python processes with the gateway's settings and the test Redis."""
    children: list[subprocess.Popen[str]] = []

    def start(code: str, *args: str) -> subprocess.Popen[str]:
        env = os.environ | {"DJANGO_SETTINGS_MODULE": "gateway.settings", "REDIS_URL": redis_url}
        pin = f"from gateway import installation; installation.pin({installation.redis_prefix()!r})\n"
        child = subprocess.Popen(
            [sys.executable, "-c", pin + code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=settings.BASE_DIR,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
