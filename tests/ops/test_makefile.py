"""The Makefile's promises to an operator: an unsupported Python stops it first with a clear message,
`make serve` applies migrations before serving (unless SKIP_MIGRATE=1), and installs check hashes.
Dry runs (`make -n`): nothing is installed or served."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON_310 = """#!/bin/sh
# Answers the Makefile's questions as Python 3.10 would.
case "$*" in
  *">= (3, 11)"*) echo 0 ;;
  *version_info*) echo 3.10 ;;
  *) echo "Python 3.10.12" ;;
esac
"""


def _make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def checkout_without_venv(tmp_path: Path) -> Path:
    """A directory with the Makefile's inputs but no .venv: the check asks $(PYTHON)."""
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_stops_naming_the_version_when_python_is_older_than_3_11(checkout_without_venv: Path) -> None:
    fake = checkout_without_venv / "python3.10"
    fake.write_text(FAKE_PYTHON_310)
    fake.chmod(0o755)

    done = _make("-n", "install", f"PYTHON={fake}", cwd=checkout_without_venv)

    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr
    assert "is Python 3.10" in done.stderr
    assert "pip" not in done.stdout  # stopped before anything ran


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_stops_with_a_message_when_python_does_not_run(checkout_without_venv: Path) -> None:
    done = _make("-n", "install", f"PYTHON={checkout_without_venv / 'no-such-python'}", cwd=checkout_without_venv)

    assert done.returncode != 0
    assert "needs Python 3.11 or newer" in done.stderr and "does not run" in done.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_installs_with_hash_checking_when_python_is_supported(checkout_without_venv: Path) -> None:
    done = _make("-n", "install-dev", f"PYTHON={sys.executable}", cwd=checkout_without_venv)

    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if " install " in line and "pip" in line]
    assert len(installs) == 2
    assert all("--require-hashes" in line for line in installs)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_migrates_before_serving_unless_skipped() -> None:
    steps = _make("-n", "serve").stdout.splitlines()
    migrate = next(i for i, line in enumerate(steps) if "manage.py migrate --noinput" in line)
    serve = next(i for i, line in enumerate(steps) if "gunicorn gateway.asgi:application" in line)
    assert migrate < serve

    skipped = _make("-n", "serve", "SKIP_MIGRATE=1").stdout
    assert "manage.py migrate" not in skipped
    assert "gunicorn gateway.asgi:application" in skipped


@pytest.mark.parametrize("name", ["base.txt", "dev.txt"])
def test_every_requirement_is_pinned_with_its_hashes_when_locked(name: str) -> None:
    """What `pip install --require-hashes` (the Makefile, the Dockerfile) and `pip-audit
    --require-hashes` (CI) need: one exact version and at least one sha256 per package."""
    text = (ROOT / "requirements" / name).read_text()
    entries = [
        entry for entry in text.replace("\\\n", " ").splitlines() if entry and not entry.lstrip().startswith("#")
    ]
    assert len(entries) > 20
    for entry in entries:
        assert re.match(r"^[A-Za-z0-9._\[\],-]+==[^ ]+ ", entry), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry
