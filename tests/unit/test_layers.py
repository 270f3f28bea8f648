"""The rules of ARCHITECTURE.md §2 that a tool can check, for every module under src/trustfleet.

* Imports go in the allowed direction between packages.
* No package imports another package's ``_private`` modules: what a package offers to others
  is in its ``__init__.py`` ``__all__``.
* Every module of ``services`` and ``server`` declares ``__all__``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "trustfleet"

# What each package may import from trustfleet (besides itself and `errors`, `configfile`,
# `fileio`, `processes`, `wire`, `crt` and `rbac`, the edge utilities every package may use).
_EVERY_PACKAGE = {
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
    "audit",
    "monitoring",
    "lwm2m",
}
"""What the edge packages (sim, cli) may use."""

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "configfile": set(),
    "fileio": set(),
    "processes": set(),
    "wire": set(),
    "crt": set(),
    "rbac": set(),
    "audit": set(),
    "monitoring": set(),
    "settings": set(),
    "keystore": set(),
    "pki": set(),
    "store": {"audit", "monitoring"},
    "broker": {"pki"},
    "ota": {"keystore", "pki"},
    "attestation": {"pki"},
    "lwm2m": {"keystore", "pki", "ota", "settings"},
    "services": {
        "keystore",
        "pki",
        "store",
        "settings",
        "ota",
        "attestation",
        "broker",
        "audit",
        "monitoring",
        "lwm2m",
    },
    "server": {
        "keystore",
        "pki",
        "store",
        "services",
        "settings",
        "broker",
        "ota",
        "attestation",
        "audit",
        "monitoring",
        "lwm2m",
    },
    "agent": {"keystore", "pki", "ota", "attestation", "monitoring"},
    "sim": _EVERY_PACKAGE,  # at the edge: the harness drives every package
    "cli": _EVERY_PACKAGE | {"sim"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py") if rel.parts else ""


@cache
def _imported_modules(source: str) -> frozenset[str]:
    """Dotted names of the modules ``source`` imports (absolute imports only)."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from trustfleet.x import _y` imports the module _y when there is one.
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if _is_module(f"{node.module}.{alias.name}")
            )
    return frozenset(found)


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] != "trustfleet":
        return False
    path = SRC.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """The trustfleet packages ``path`` imports from."""
    found: set[str] = set()
    for name in _imported_modules(path.read_text(encoding="utf-8")):
        parts = name.split(".")
        if parts[0] == "trustfleet" and len(parts) > 1:
            found.add(parts[1])
    return found


def _private_imports(source: str, package: str) -> set[str]:
    """Modules of a package other than ``package`` whose dotted name has a ``_private`` part."""
    found: set[str] = set()
    for name in _imported_modules(source):
        parts = name.split(".")
        if parts[0] != "trustfleet" or len(parts) < 2 or parts[1] == package:
            continue
        if any(part.startswith("_") and not part.startswith("__") for part in parts[1:]):
            found.add(name)
    return found


MODULES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_layering(path: Path) -> None:
    package = _package(path)
    assert package in ALLOWED, (
        f"new top-level package {package}: add it to ALLOWED and ARCHITECTURE"
    )
    edge = {"errors", "configfile", "fileio", "processes", "wire", "crt", "rbac"}  # edge utilities
    bad = _imports(path) - ALLOWED[package] - {package} - edge
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)} against the layering"


def test_agent_never_reaches_the_server_side() -> None:
    for path in (SRC / "agent").rglob("*.py"):
        assert not _imports(path) & {"store", "services", "server"}, path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_package_imports_another_packages_private_modules(path: Path) -> None:
    bad = _private_imports(path.read_text(encoding="utf-8"), _package(path))
    assert not bad, (
        f"{path.relative_to(SRC)} imports {sorted(bad)}: export the names in that package's "
        "__init__.py __all__ and import them from the package"
    )


DECLARING = sorted(p for package in ("services", "server") for p in (SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", DECLARING, ids=lambda p: str(p.relative_to(SRC)))
def test_services_and_server_modules_declare_all(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    declared = any(
        isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(target, ast.Name) and target.id == "__all__"
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
        for node in tree.body
    )
    assert declared, f"{path.relative_to(SRC)} declares no __all__"


@pytest.mark.parametrize(
    ("line", "package", "found"),
    [
        ("from trustfleet.ota._repofiles import RepoFiles", "services", True),
        ("import trustfleet.ota._repofiles", "services", True),
        ("from trustfleet.ota import _repofiles", "services", True),
        ("from trustfleet.agent.platform._files import read_json", "sim", True),
        ("from trustfleet.ota._repofiles import RepoFiles", "ota", False),
        ("from trustfleet.ota import RepoFiles", "services", False),
        ("from trustfleet import __version__", "services", False),
    ],
    ids=[
        "from-private",
        "import-private",
        "private-as-name",
        "nested-private",
        "same-package",
        "public-export",
        "dunder",
    ],
)
def test_the_private_import_rule(line: str, package: str, found: bool) -> None:
    assert bool(_private_imports(line, package)) is found
