"""The import direction of ARCHITECTURE.md §2 holds for every module under src/trustfleet."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "trustfleet"

# What each package may import from trustfleet (besides itself and `errors`, `configfile`,
# `fileio` and `processes`, the edge utilities every package may use).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "configfile": set(),
    "fileio": set(),
    "processes": set(),
    "settings": set(),
    "keystore": set(),
    "pki": set(),
    "store": set(),
    "broker": {"pki"},
    "ota": {"keystore", "pki"},
    "attestation": {"pki"},
    "services": {"keystore", "pki", "store", "settings", "ota", "attestation", "broker"},
    "server": {"keystore", "pki", "store", "services", "settings", "broker", "ota", "attestation"},
    "agent": {"keystore", "pki", "ota", "attestation"},
    "sim": {  # at the edge: the harness drives every package
        "keystore",
        "pki",
        "store",
        "services",
        "server",
        "agent",
        "settings",
        "broker",
        "ota",
        "attestation",
    },
    "cli": {
        "keystore",
        "pki",
        "store",
        "services",
        "server",
        "agent",
        "settings",
        "broker",
        "ota",
        "attestation",
        "sim",
    },
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "trustfleet" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layering(path: Path) -> None:
    package = _package(path)
    assert package in ALLOWED, (
        f"new top-level package {package}: add it to ALLOWED and ARCHITECTURE"
    )
    edge = {"errors", "configfile", "fileio", "processes"}  # the edge utilities
    bad = _imports(path) - ALLOWED[package] - {package} - edge
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)} against the layering"


def test_agent_never_reaches_the_server_side() -> None:
    for path in (SRC / "agent").rglob("*.py"):
        assert not _imports(path) & {"store", "services", "server"}, path
