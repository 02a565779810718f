"""The Celery app: a real worker answers `gateway.ping` through Redis; the embedded profile runs it eagerly."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.result import EagerResult

from gateway.celery import ping

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker_queue(tmp_path: Path) -> Iterator[str]:
    """A `celery -A gateway worker` on a queue of its own, with this test run's environment."""
    queue = f"symbiosis-test-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "gateway", "worker", "--pool", "solo", "--queues", queue]
    command += ["--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("w") as output:
        worker = subprocess.Popen(command, cwd=REPO, env=os.environ.copy(), stdout=output, stderr=subprocess.STDOUT)
    try:
        yield queue
    finally:
        worker.terminate()  # warm shutdown
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        if worker.returncode not in (0, -15):
            print(log.read_text())


@pytest.mark.redis
def test_worker_answers_pong_when_sent_the_ping_task(worker_queue: str) -> None:
    result = ping.apply_async(queue=worker_queue)

    assert not isinstance(result, EagerResult)
    assert result.get(timeout=60) == "pong"


def test_ping_runs_eagerly_when_no_redis_url_is_set(tmp_path: Path) -> None:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "DATA_DIR": str(tmp_path / "data"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    script = "from gateway.celery import ping; result = ping.delay(); print(type(result).__name__, result.get())"

    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["EagerResult", "pong"]
