"""The import contracts in pyproject.toml stay whole: `make lint` runs them (lint-imports), and
this checks the one thing they cannot see, a new module of `gateway` left out of every layer."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers" and "gateway.proxy" in contract["layers"]:
            return contract["layers"]
    raise AssertionError("no layers contract with gateway.proxy as a layer in pyproject.toml")


def test_the_proxy_is_the_top_layer_below_the_entry_point() -> None:
    layers = _layers()
    assert layers[:5] == ["gateway.asgi", "gateway.proxy", "portal", "approvals", "billing"]


def test_every_module_of_gateway_has_a_layer() -> None:
    placed = {name.strip() for layer in _layers() for name in layer.split(":")}
    modules = {
        f"gateway.{path.stem if path.suffix == '.py' else path.name}"
        for path in (ROOT / "gateway").iterdir()
        if not path.name.startswith("__")
        and (path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()))
    }
    missing = sorted(modules - placed)
    assert not missing, f"add these to the core layer of the layers contract in pyproject.toml: {missing}"
