"""What the README documents: the variables of its Configuration table (the fixed points that the
compose file, the manifests and the env example may use)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@cache
def configuration_variables() -> frozenset[str]:
    """Every variable named in the first column of the README's Configuration table."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("\n## Configuration\n")
    end = readme.index("\n## ", start + 1)
    names: set[str] = set()
    for line in readme[start:end].splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return frozenset(names)


@cache
def readme_variables() -> frozenset[str]:
    """Every OTEL_* name the README mentions anywhere (the SDK reads them itself), and the table's."""
    readme = (ROOT / "README.md").read_text()
    return configuration_variables() | frozenset(re.findall(r"\b(OTEL_[A-Z0-9_]+[A-Z0-9])\b", readme))


def is_documented(name: str) -> bool:
    """NAME is a documented variable, or NAME_FILE of one (README: any variable can come from a file)."""
    return name in readme_variables() or (name.endswith("_FILE") and name[: -len("_FILE")] in readme_variables())
