"""LiteLLM's proxy as the peer: installed into its own virtualenv (.bench/litellm-venv, kept between runs).

Run as lean as it goes: one worker, no database, no telemetry, no spend or error logs, the
bundled model price map (nothing fetched at start-up), a master key (the gateway checks keys too).
`python -m tests.bench.peer` installs it alone.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from tests.bench.procs import CACHE, ROOT, SERVER_CORE, STATE, Proc, pinned

# Our reference was 1.106. Later 1.106.x and 1.105.x releases pin a certifi newer than the registry
# here serves; 1.106.0 installs. BENCH_LITELLM_VERSION picks another.
LITELLM_VERSION = os.environ.get("BENCH_LITELLM_VERSION", "1.106.0")
VENV = CACHE / "litellm-venv"
INSTALL_TIMEOUT_S = 900
MARKER = VENV / f".installed-litellm-{LITELLM_VERSION}"


def ensure_installed() -> Path:
    """The `litellm` executable, installing it first if the cached venv lacks it; raises on failure."""
    executable = VENV / "bin" / "litellm"
    if MARKER.exists() and executable.exists():
        return executable
    print(f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV.relative_to(ROOT)} ...", flush=True)
    log = STATE / "logs" / "litellm-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    python = VENV / "bin" / "python"
    steps = [
        [shutil.which("python3") or sys.executable, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ]
    shutil.rmtree(VENV, ignore_errors=True)  # a half-made venv from an interrupted install
    with log.open("w") as out:
        for argv in steps:
            try:
                result = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{' '.join(argv[-3:])} took longer than {INSTALL_TIMEOUT_S} s") from None
            if result.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{' '.join(argv[-3:])} failed (see {log}): {' | '.join(tail)}")
    if not executable.exists():
        raise RuntimeError(f"litellm was installed but {executable} is missing")
    MARKER.touch()
    return executable


def write_config(*, upstream: str, master_key: str) -> Path:
    config = STATE / "litellm-config.yaml"
    config.write_text(
        f"""\
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/upstream-model
      api_base: {upstream}
      api_key: sk-bench

litellm_settings:
  telemetry: false
  set_verbose: false
  json_logs: false
  turn_off_message_logging: true
  drop_params: true
  request_timeout: 600

general_settings:
  master_key: {master_key}
  disable_spend_logs: true
  disable_error_logs: true
  disable_adding_master_key_hash_to_db: true
  allow_requests_on_db_unavailable: true
"""
    )
    return config


def start(*, executable: Path, upstream: str, port: int) -> tuple[Proc, str]:
    """Start the proxy pinned to the server core; returns it and the key clients must send."""
    master_key = "sk-litellm-bench-" + secrets.token_hex(8)
    config = write_config(upstream=upstream, master_key=master_key)
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env |= {
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price map download at start-up
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "NO_REDOC": "True",
        "STORE_MODEL_IN_DB": "False",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    argv = [
        str(executable),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    return Proc("litellm", pinned(SERVER_CORE, argv), env=env), master_key


def version() -> str:
    return LITELLM_VERSION


if __name__ == "__main__":
    print(ensure_installed())
