"""Two installations, each with a database of its own, share one Redis server: the same project
and key ids in both, yet neither sees the other's rate-limit window. A database copied from one
(a backup restored next to it) shares its counters until `manage.py reset_installation_id`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.bench.procs import Proc, free_port, wait_for_port

pytestmark = pytest.mark.redis

_LIMIT_THE_KEY = (
    "from gateway import services; from gateway.models import VirtualKey; "
    "services.set_key_limits(key=VirtualKey.objects.get(), rpm_limit=2, tpm_limit=None, max_streams=None)"
)


class Installation:
    """An embedded-profile installation (SQLite in its own DATA_DIR) on the shared test Redis."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.procs: list[Proc] = []

    def environment(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("DJANGO_")}
        return environment | {
            "DATA_DIR": str(self.data_dir),
            "REDIS_URL": settings.REDIS_URL,
            "DEMO_PROVIDER_ENABLED": "true",
            "GOVERNANCE_LEASES": "false",
        }

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            env=self.environment(),
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def serve(self) -> str:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "gateway.asgi:application", "--port", str(port), "--lifespan", "on"]
        proc = Proc(f"installation-{port}", argv, env=self.environment(), log=self.data_dir / f"{port}.log")
        self.procs.append(proc)
        wait_for_port(port, timeout=60, proc=proc)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop(grace=10)
        self.procs.clear()


@pytest.fixture
def installations(tmp_path: Path) -> Iterator[list[Installation]]:
    made: list[Installation] = []
    yield made
    for installation in made:
        installation.stop()


def _statuses(url: str, secret: str, count: int) -> list[int]:
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {secret}"}
    return [
        httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30).status_code
        for _ in range(count)
    ]


def test_installations_sharing_redis_keep_their_own_counters_until_a_copy_is_reset(
    installations: list[Installation], tmp_path: Path
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (set REDIS_URL=redis://...)")
    first, second = Installation(tmp_path / "first"), Installation(tmp_path / "second")
    installations += [first, second]
    secrets = {}
    for installation in (first, second):
        installation.manage("migrate", "--noinput", "-v0")
        secrets[installation] = re.search(r"API key: (\S+)", installation.manage("bootstrap_demo"))[1]
        installation.manage("shell", "-c", _LIMIT_THE_KEY)  # project 1, key 1 in both databases

    assert _statuses(first.serve(), secrets[first], 3) == [200, 200, 429]
    assert _statuses(second.serve(), secrets[second], 3) == [200, 200, 429]  # not the first's window

    # A copy of the first's database (a backup restored elsewhere) is the same installation...
    copy = Installation(tmp_path / "copy")
    installations.append(copy)
    shutil.copytree(first.data_dir, copy.data_dir, ignore=shutil.ignore_patterns("*.log"))
    assert _statuses(copy.serve(), secrets[first], 1) == [429]
    copy.stop()
    # ... until it gets an id of its own.
    new_id = copy.manage("reset_installation_id").strip()
    assert _statuses(copy.serve(), secrets[first], 3) == [200, 200, 429]
    assert new_id not in first.manage(
        "shell", "-c", "from gateway import installation; print(installation.installation_id())"
    )
