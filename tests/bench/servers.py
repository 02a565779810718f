"""The ASGI servers the bench serves an application with, each with one worker pinned to the server core.

- uvicorn, managed by gunicorn, as `make serve` and production run the gateway
  (`gateway.workers.UvicornWorker`);
- granian, a Rust HTTP server (target `gateway-granian`): installed into the project venv on first
  use (GRANIAN_VERSION, overridable with BENCH_GRANIAN_VERSION), never into requirements/. It
  serves the ASGI interface with the lifespan protocol, on uvloop like uvicorn.

`lifespan_check()` shows that a server runs the lifespan protocol's shutdown: the gateway flushes
its buffered request-log rows there, and a server that skips it loses them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.bench.procs import SERVER_CORE, VENV_BIN, Proc, free_port, pinned, run, wait_for_port

SERVERS = ("uvicorn", "granian")
GRANIAN_VERSION = os.environ.get("BENCH_GRANIAN_VERSION", "2.8.9")
BACKLOG = 2048  # the slow-streams scenario opens a thousand connections within a couple of seconds


def serve(name: str, app: str, *, port: int, env: Mapping[str, str], server: str = "uvicorn") -> Proc:
    """Start `app` (module:attribute) on 127.0.0.1:port with one worker, pinned to the server core."""
    if server == "granian":
        argv = [
            str(ensure_granian()),
            "--interface",
            "asgi",  # with the lifespan protocol ("asginl" is without)
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--backlog",
            str(BACKLOG),
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *os.environ.get("BENCH_GRANIAN_OPTIONS", "").split(),  # to try others: "--runtime-mode st"
            app,
        ]
    else:
        argv = [
            str(VENV_BIN / "gunicorn"),
            app,
            "-k",
            "gateway.workers.UvicornWorker",
            "--workers",
            "1",
            "--backlog",
            str(BACKLOG),
            "--bind",
            f"127.0.0.1:{port}",
        ]
        if _gunicorn_has_control_socket():
            argv.append("--no-control-socket")  # not shared with any other gunicorn on this machine
    return Proc(name, pinned(SERVER_CORE, argv), env=env)


@cache
def _gunicorn_has_control_socket() -> bool:
    result = subprocess.run([str(VENV_BIN / "gunicorn"), "--help"], capture_output=True, text=True, timeout=30)
    return "--no-control-socket" in result.stdout


def ensure_granian() -> Path:
    """granian's executable in the project venv, installed (pinned) first when missing or another version."""
    path = VENV_BIN / "granian"
    if granian_version() != GRANIAN_VERSION:
        print(f"installing granian=={GRANIAN_VERSION} into the project venv (pip) ...", flush=True)
        run([str(VENV_BIN / "python"), "-m", "pip", "install", "-q", f"granian=={GRANIAN_VERSION}"], timeout=600)
        granian_version.cache_clear()
    return path


@cache
def granian_version() -> str | None:
    path = VENV_BIN / "granian"
    if not path.exists():
        return None
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"(\d+\.\d+\.\d+\S*)", result.stdout)
    return match.group(1) if match else None


@dataclass
class LifespanCheck:
    server: str
    requests: int
    rows_before_stop: int  # rows written while the server ran (a flush interval of an hour: none)
    rows_after_stop: int
    stopped_in_s: float
    exit_code: int | None

    @property
    def flushed(self) -> bool:
        return self.rows_after_stop == self.requests

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"flushed": self.flushed}

    def line(self) -> str:
        return (
            f"{self.server}: {self.requests} requests, {self.rows_before_stop} log rows before SIGTERM, "
            f"{self.rows_after_stop} after (exit {self.exit_code} in {self.stopped_in_s:.1f} s): "
            + ("the lifespan shutdown flushed the log buffer" if self.flushed else "ROWS LOST")
        )


def lifespan_check(
    *, server: str, env: Mapping[str, str], database_url: str, url_path: str, key: str, body: bytes, requests: int = 20
) -> LifespanCheck:
    """Serve the gateway on an emptied request log with a flush interval of an hour, send `requests`
    requests, send SIGTERM to the server's main process (as a supervisor does) and count the rows:
    all of them are there only if the lifespan shutdown ran the gateway's final flush."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM gateway_requestlog")
    quiet_env = dict(env) | {"LOG_FLUSH_INTERVAL": "3600", "LOG_FLUSH_BATCH": "100000"}
    port = free_port()
    proc = serve(f"lifespan-{server}", "gateway.asgi:application", port=port, env=quiet_env, server=server)
    try:
        wait_for_port(port, timeout=60, proc=proc)
        for _ in range(requests):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{url_path}",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
                response.read()
        time.sleep(0.5)
        before = _count_rows(database_url)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            code: int | None = proc.popen.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        stopped_in = time.monotonic() - started
    finally:
        proc.stop()
    return LifespanCheck(server, requests, before, _count_rows(database_url), stopped_in, code)


def _count_rows(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM gateway_requestlog").fetchone()
    return int(row[0]) if row else 0
