"""packaging/dists.toml: the split of src/trustfleet into the device and server distributions.

Every file belongs to exactly one distribution, the device set is closed under its static imports
(but for the allowlisted simulation-only module), every third-party module it imports comes from
a device requirement, and no server package enters the device closure.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "packaging"))

from _dists import Dist, load_dists, select_files, source_files  # noqa: E402
from _sbom import resolve_closure  # noqa: E402

SRC = ROOT / "src"
SERVER_PACKAGES = {
    "sqlalchemy", "alembic", "psycopg", "psycopg-binary", "starlette", "fastapi", "uvloop",
    "typer", "click", "paho-mqtt", "rich", "jinja2", "scikit-learn", "numpy", "scipy",
    "pyopenssl", "argon2-cffi", "webauthn", "prometheus-client", "python-multipart",
    "cyclonedx-python-lib", "mako", "h11",
}  # fmt: skip


@cache
def _dists() -> dict[str, Dist]:
    return load_dists(ROOT)


@cache
def _split() -> dict[str, list[str]]:
    return select_files(_dists(), source_files(SRC))


@cache
def _closure(key: str) -> frozenset[str]:
    _, nodes = resolve_closure(_dists()[key].requires)
    return frozenset(nodes)


def _module_file(module: str, files: set[str]) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"{base}/__init__.py"):
        if candidate in files:
            return candidate
    return None


def _imports(path: str) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) for every import, also inside functions."""
    tree = ast.parse((SRC / path).read_text(encoding="utf-8"))
    package = path.removesuffix(".py").replace("/", ".")
    if not path.endswith("__init__.py"):
        package = package.rpartition(".")[0]
    else:
        package = package.removesuffix(".__init__")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                yield base, alias.name


def _device_imports() -> Iterator[tuple[str, str, str | None]]:
    for path in _split()["agent"]:
        if path.endswith(".py"):
            for module, name in _imports(path):
                yield path, module, name


def _needed_files(module: str, name: str | None, every: set[str]) -> list[str]:
    parts = module.split(".")
    needed = [f"{'/'.join(parts[:i])}/__init__.py" for i in range(1, len(parts) + 1)]
    if name is not None and _module_file(f"{module}.{name}", every):
        needed.append(_module_file(f"{module}.{name}", every) or "")
    elif _module_file(module, every):
        needed.append(_module_file(module, every) or "")
    return [n for n in needed if n in every]


def test_every_file_belongs_to_exactly_one_distribution() -> None:
    every = source_files(SRC)
    split = _split()
    assert sorted(split["agent"] + split["server"]) == every
    assert not set(split["agent"]) & set(split["server"])


def test_package_data_is_shipped() -> None:
    server = set(_split()["server"])
    for pattern in ("broker/plugin/", "store/migrations/", "server/console/templates/",
                    "server/console/static/", "monitoring/scenarios/"):  # fmt: skip
        assert any(f.startswith(f"trustfleet/{pattern}") for f in server), pattern
    assert "trustfleet/py.typed" in _split()["agent"]
    assert not any("__pycache__" in f or f.endswith((".pyc", ".so")) for f in source_files(SRC))


def test_device_set_is_closed_under_its_imports() -> None:
    every = set(source_files(SRC))
    agent = set(_split()["agent"])
    allowed = set(_dists()["agent"].lazy_imports)
    missing = [
        (path, module if name is None else f"{module}.{name}")
        for path, module, name in _device_imports()
        if module.split(".")[0] == "trustfleet"
        and module not in allowed
        and f"{module}.{name}" not in allowed
        and not set(_needed_files(module, name, every)) <= agent
    ]
    assert not missing, f"device files importing server modules: {missing}"


def test_the_allowlisted_module_is_a_server_file() -> None:
    server = set(_split()["server"])
    for module in _dists()["agent"].lazy_imports:
        assert f"{module.replace('.', '/')}.py" in server


def test_third_party_imports_of_the_device_set_come_from_device_requirements() -> None:
    providers = metadata.packages_distributions()
    closure = _closure("agent")
    foreign: list[tuple[str, str]] = []
    for path, module, _ in _device_imports():
        top = module.split(".")[0]
        if not top or top == "trustfleet" or top in sys.stdlib_module_names or top == "__future__":
            continue
        dists = {canonicalize_name(d) for d in providers.get(top, [])}
        if not dists & closure:
            foreign.append((path, module))
    assert not foreign, f"device imports outside its requirements: {foreign}"


def test_requirements_together_equal_the_root_pyproject() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = sorted(str(Requirement(r)) for r in root["project"]["dependencies"])
    dists = _dists()
    union = sorted(
        str(Requirement(r)) for r in (*dists["agent"].requires, *dists["server"].requires)
    )
    assert union == declared
    assert root["project"]["name"] == "trustfleet-dev"


@pytest.mark.parametrize("package", sorted(SERVER_PACKAGES))
def test_no_server_package_in_the_device_closure(package: str) -> None:
    assert canonicalize_name(package) not in _closure("agent")


def test_no_server_requirement_in_the_device_closure() -> None:
    server_top = {canonicalize_name(Requirement(r).name) for r in _dists()["server"].requires}
    assert not server_top & _closure("agent")
    assert _closure("server") - _closure("agent")  # the server closure is much bigger
