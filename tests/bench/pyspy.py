"""py-spy for `python -m tests.bench.run --profile`: install it, and summarize what it recorded.

The recording is py-spy's raw (collapsed stacks) format, one `frame;frame;...;leaf count` per line,
taken with `--gil` so that only the thread holding the GIL is sampled: the time Python spends
working, not threads parked in a pool. speedscope.app and flamegraph.pl read the file as it is.

py-spy charges time spent in C (uvloop, the socket calls, orjson) to the nearest Python frame, so
a tiny function can look hot by standing next to C work: check a suspect with timeit before
believing it (a Django settings attribute read, 0.7 µs here, showed up as several %).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench.procs import ROOT, VENV_BIN, run

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
OURS = ("gateway", "billing", "approvals")


def ensure_installed() -> str:
    path = VENV_BIN / "py-spy"
    if not path.exists():
        print("installing py-spy into the project venv (pip install py-spy) ...", flush=True)
        run([str(VENV_BIN / "python"), "-m", "pip", "install", "-q", "py-spy"], timeout=300)
    return str(path)


@dataclass(frozen=True)
class Frame:
    func: str
    path: str  # shortened: relative to site-packages, the stdlib or the project
    line: str

    @property
    def name(self) -> str:
        return f"{self.func} ({self.path})" if self.path else self.func

    @property
    def site(self) -> str:
        return f"{self.func} ({self.path}:{self.line})" if self.line else self.name

    @property
    def area(self) -> str:
        if not self.path:
            return "(native)"
        top = self.path.split("/", 1)[0]
        if top in OURS:
            return f"{top}/ (ours)"
        if top == "tests":
            return "tests/ (bench)"
        if "/" not in self.path or top in {"asyncio", "concurrent", "email", "json", "http", "urllib"}:
            return f"stdlib {top.removesuffix('.py')}"
        return top


def frames(stack: str) -> Iterator[Frame]:
    """The frames of one collapsed stack, outermost first."""
    for text in stack.split(";"):
        match = _FRAME.match(text.strip())
        if match is None:
            yield Frame(text.strip(), "", "")
            continue
        path = match["file"]
        for marker in ("site-packages/", "/lib/python3.11/", f"{ROOT}/"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        yield Frame(match["func"], path, match["line"] or "")


# Frames every sample sits under (the server, its worker, the event loop, a pool thread): in a
# cumulative listing they only say "100 %". uvicorn's protocol and middleware frames wrap every
# request the same way; granian's worker frames play the same part under granian.
_SCAFFOLDING = (
    "(gunicorn",
    "(uvicorn/workers.py)",
    "(uvicorn/_compat.py)",
    "(uvicorn/server.py)",
    "(uvicorn/protocols/http/",
    "(uvicorn/middleware/",
    "(granian)",
    "(granian/",
    "(click/",
    "(multiprocessing/",
    "(asyncio/runners.py)",
    "(asyncio/events.py)",
    "(threading.py)",
    "(concurrent/futures/thread.py)",
)


def _is_scaffolding(name: str) -> bool:
    return any(marker in name for marker in _SCAFFOLDING)


@dataclass
class Summary:
    """What a recording says: the text to print, and the top entries for results (JSON)."""

    text: str
    samples: int
    own: list[tuple[str, float]]  # (function, share of samples) by own (self) time
    cumulative: list[tuple[str, float]]  # by cumulative (inclusive) time, the scaffolding left out

    def as_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "top_by_own_time": [{"function": f, "share": round(p, 4)} for f, p in self.own],
            "top_by_cumulative_time": [{"function": f, "share": round(p, 4)} for f, p in self.cumulative],
        }


def summarize(raw: Path, *, top: int = 25) -> Summary:
    """Where the time goes: the top functions by own time and by cumulative time, then by package,
    our own code, and the call sites of the hottest functions."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    by_area: collections.Counter[str] = collections.Counter()
    callers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        stack_frames = list(frames(stack))
        if not stack_frames:
            continue
        total += count
        leaf = stack_frames[-1]
        self_time[leaf.name] += count
        by_area[leaf.area] += count
        if len(stack_frames) > 1:
            callers[leaf.name][stack_frames[-2].site] += count
        for name in {f.name for f in stack_frames}:
            inclusive[name] += count
        for name in {f.name for f in stack_frames if f.area.endswith("(ours)")}:
            ours[name] += count
    if not total:
        return Summary("py-spy recorded no samples", 0, [], [])

    def pct(n: int) -> str:
        return f"{n / total:>6.1%}  {n:>7}"

    def table(title: str, rows: list[tuple[str, int]]) -> list[str]:
        return [f"\n{title}", f"  {'%':>6}  {'samples':>7}  function (file)"] + [
            f"  {pct(n)}  {name}" for name, n in rows
        ]

    own = self_time.most_common(top)
    cumulative = [(name, n) for name, n in inclusive.most_common() if not _is_scaffolding(name)][:top]
    out = [f"\npy-spy: {total} samples of the thread holding the GIL (the worker's Python work)"]
    out += table(f"top {top} functions by own time (the function's own code, what it calls excluded)", own)
    out += table(
        f"top {top} functions by cumulative time (with all they call; server and event loop left out)", cumulative
    )
    out += table("own time by package (where the CPU is)", by_area.most_common())
    out += table("our code (gateway/, billing/, approvals/) by cumulative time", ours.most_common(top))
    out.append("\nhottest call sites of the top 10 own-time functions")
    for name, n in self_time.most_common(10):
        sites = ", ".join(f"{site} {c / total:.1%}" for site, c in callers[name].most_common(2))
        out.append(f"  {n / total:>6.1%}  {name}  <- {sites}")
    return Summary(
        "\n".join(out),
        total,
        [(name, n / total) for name, n in own],
        [(name, n / total) for name, n in cumulative],
    )
