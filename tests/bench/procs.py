"""Start, watch and stop the benchmark's own processes (each in its own session, stopped by its id)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Results, logs and request bodies of a run; BENCH_STATE_DIR keeps a second run on the same checkout
# from overwriting the first one's. Installed peers (LiteLLM's venv) stay in CACHE, shared.
CACHE = ROOT / ".bench"
STATE = Path(os.environ.get("BENCH_STATE_DIR") or CACHE).resolve()
# The project's venv (`make install-dev`), where gunicorn, py-spy and the project's packages are.
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "python").exists() else Path(sys.prefix) / "bin"

# The server under test gets core 0; the load generator and the mock upstream share core 1.
SERVER_CORE = "0"
CLIENT_CORE = "1"


# Niceness of everything the bench starts. Negative (root only) lets the measured processes win
# the CPU from whatever else runs on a shared machine; 0 leaves the scheduler alone.
_niceness = 0


def set_niceness(value: int) -> str:
    """Use `value` for the processes started from now on; returns what was done, for the report."""
    global _niceness
    if value < 0 and os.geteuid() != 0:
        _niceness = 0
        return f"niceness {value} needs root; left at 0"
    _niceness = value if shutil.which("nice") else 0
    return f"niceness {_niceness}"


def pinned(core: str, argv: Sequence[str]) -> list[str]:
    """Prefix argv with `taskset -c core` (two cores and taskset needed) and the bench's niceness."""
    prefix = ["nice", "-n", str(_niceness)] if _niceness else []
    if pinning_available():
        prefix += ["taskset", "-c", core]
    return [*prefix, *argv]


def pinning_available() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A child process in its own session; `stop()` ends it and everything it started."""

    _all: list[Proc] = []

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log = log or STATE / "logs" / f"{name}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, not it; we stop it ourselves
        )
        Proc._all.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def children(self) -> list[int]:
        """Direct children's pids (gunicorn's worker, for instance)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self in Proc._all:
            Proc._all.remove(self)
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Whatever is left of its session (workers, grandchildren) goes too.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log_file.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # its own session: the group id is its pid

    def worker_pid(self) -> int:
        """The process that serves requests: gunicorn's or granian's one worker, else the process itself
        (LiteLLM, the mock). Raises when a server runs more than one worker: figures would be per worker."""
        children = self.children()
        if len(children) > 1:
            raise RuntimeError(f"{self.name}: expected one worker process, found {children}")
        return children[0] if children else self.pid

    @classmethod
    def stop_all(cls) -> None:
        for proc in reversed(list(cls._all)):
            proc.stop(grace=5.0)


def wait_for_port(port: int, *, timeout: float, proc: Proc | None = None) -> None:
    """Wait until 127.0.0.1:port accepts connections; raise if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with code {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    detail = f":\n{proc.tail()}" if proc is not None else ""
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout:.0f} s{detail}")


def run(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion, capturing its output; raise with that output on failure."""
    try:
        result = subprocess.run(
            list(argv),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(argv[:3])} ... took longer than {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... failed with code {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return result


def rss_mib(pid: int) -> float:
    """Resident memory of one process (VmRSS), in MiB; 0.0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Lift our soft limit on open files (inherited by what we start) towards the hard one: a
    thousand held streams cost the server two descriptors each. Returns the limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- CPU accounting: how busy the server was, and whether anything else was running ---

_TICK = os.sysconf("SC_CLK_TCK")


# The gateway's own services: their CPU is the gateway's work (log rows, counters), not noise.
SERVICE_COMMANDS = frozenset({"postgres", "postmaster", "redis-server"})


def session_cpu_seconds(session_id: int) -> float:
    """User + system CPU of every live process in a session (a Proc and all it started)."""
    return _cpu_seconds(lambda session, _command: session == session_id)


def services_cpu_seconds() -> float:
    """User + system CPU of the live Postgres and Redis server processes (SERVICE_COMMANDS)."""
    return _cpu_seconds(lambda _session, command: command in SERVICE_COMMANDS)


def _cpu_seconds(wanted: Callable[[int, str], bool]) -> float:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
            fields = tail.split()
            command = head.split("(", 1)[1]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if wanted(int(fields[3]), command):
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle, over all cores, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def own_and_waited_children_seconds() -> float:
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator, once it has exited
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU used by the server, the mock, Postgres and Redis, and everything else over one measured run."""

    def __init__(self, *, server: Proc | None, mock: Proc | None) -> None:
        self._server, self._mock = server, mock
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float, float, float]:
        server = session_cpu_seconds(self._server.pid) if self._server else 0.0
        mock = session_cpu_seconds(self._mock.pid) if self._mock and self._mock is not self._server else 0.0
        return (
            time.monotonic(),
            server,
            mock,
            services_cpu_seconds(),
            own_and_waited_children_seconds(),
            machine_busy_seconds(),
        )

    def stop(self) -> dict[str, float]:
        """Seconds and percentages of one core over the run: server, mock, services (Postgres and
        Redis), ours (bench + load generator), other."""
        end = self._snapshot()
        elapsed, server, mock, services, ours, busy = (b - a for a, b in zip(self._start, end, strict=True))
        other = max(0.0, busy - server - mock - services - ours)
        return {
            "elapsed_s": elapsed,
            "server_cpu_s": server,
            "mock_cpu_s": mock,
            "services_cpu_s": services,
            "client_cpu_s": ours,
            "other_cpu_s": other,
        } | percentages(elapsed, server=server, mock=mock, services=services, client=ours, other=other)


def percentages(elapsed: float, **seconds: float) -> dict[str, float]:
    """`{name}_cpu_pct` for each CPU time given: its share of one core over `elapsed` seconds."""
    return {f"{name}_cpu_pct": 100 * value / elapsed if elapsed else 0.0 for name, value in seconds.items()}
