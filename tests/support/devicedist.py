"""The device distribution installed alone (issue 17 §1), and what "server-only" means.

* :func:`build_dists` runs ``packaging/build.py --out DIR`` (the dev venv's python): both wheels,
  their CycloneDX SBOMs and ``SHA256SUMS``.
* :func:`make_device_venv` makes a fresh venv (no system site-packages, the checkout nowhere on
  its path) and installs the device wheel into it OFFLINE: ``pip install --no-index
  --find-links .venv/wheelhouse`` (the wheelhouse ``scripts/bootstrap.sh`` builds), with pip's
  own configuration switched off so no other index or folder can supply a package.
* The session fixtures :func:`device_dists` and :func:`device_venv` do both once.
* :func:`closure` is the pure part: the dependency closure of requirement lines, each
  distribution's requirements read from a wheel's METADATA (our two) or from the dev venv's
  installed metadata (everything else). :func:`server_only_names` are the names that must
  never appear in a device installation: what the server wheel requires by name, and what
  their closure pulls in that the device's own requirements do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "BUILD",
    "REPO",
    "VENV_TOOLS",
    "WHEELHOUSE",
    "BuiltDists",
    "DeviceVenv",
    "WheelMeta",
    "build_dists",
    "closure",
    "dev_venv_requires",
    "device_dists",
    "device_venv",
    "local_then_dev",
    "make_device_venv",
    "offline_env",
    "sbom_names",
    "server_only",
    "server_only_names",
    "wheel_meta",
]

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "packaging" / "build.py"
WHEELHOUSE = REPO / ".venv" / "wheelhouse"
VENV_TOOLS = frozenset({"pip", "setuptools"})
"""What ``python -m venv`` puts in every venv (the installer, not the device's software)."""
BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 300
_MAX_METADATA_BYTES = 1024 * 1024

Requires = Callable[[str], Sequence[str] | None]
"""A distribution's requirement lines by (canonical) name; None: not known."""


@dataclass(frozen=True)
class WheelMeta:
    """A wheel's name, version and ``Requires-Dist`` lines (its METADATA)."""

    name: str
    version: str
    requires: tuple[str, ...]


@dataclass(frozen=True)
class BuiltDists:
    """What ``packaging/build.py --out DIR`` wrote."""

    out: Path
    device_wheel: Path
    server_wheel: Path
    device_sbom: Path

    @property
    def version(self) -> str:
        """The project version (the device wheel's)."""
        return wheel_meta(self.device_wheel).version


def offline_env() -> dict[str, str]:
    """This environment without pip's configuration (no index, no find-links but ours), and
    without ``PYTHONPATH``/``PYTHONHOME`` (the checkout's src must not leak into the venv)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def build_dists(out: Path) -> BuiltDists:
    """Both distributions by ``packaging/build.py --out OUT``.

    Raises:
        AssertionError: The build failed (with its last output).
    """
    proc = subprocess.run(
        [sys.executable, str(BUILD), "--out", str(out)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False, cwd=REPO,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"packaging/build.py failed: {proc.stderr.strip()[-2000:]}")
    (device,) = out.glob("trustfleet_agent-*-py3-none-any.whl")
    (server,) = out.glob("trustfleet-*-py3-none-any.whl")
    (sbom,) = out.glob("trustfleet_agent-*.cdx.json")
    return BuiltDists(out=out, device_wheel=device, server_wheel=server, device_sbom=sbom)


@dataclass(frozen=True)
class DeviceVenv:
    """A fresh venv holding the device wheel and its requirements, nothing else."""

    root: Path
    dists: BuiltDists

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.root / "bin" / "python"

    @property
    def agent(self) -> Path:
        """The device distribution's console script."""
        return self.root / "bin" / "trustfleet-agent"

    def run(self, *argv: str | Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command in the venv's folder (outside the checkout), without PYTHONPATH."""
        return subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, timeout=timeout_s,
            check=False, cwd=self.root, env=offline_env(),
        )  # fmt: skip

    def python_json(self, code: str) -> Any:
        """Run ``code`` with the venv's python; what it printed, as JSON."""
        proc = self.run(self.python, "-I", "-c", code)
        if proc.returncode != 0:
            raise AssertionError(f"the venv's python failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout)

    def distributions(self) -> set[str]:
        """The canonical names of every distribution installed in the venv."""
        code = (
            "import importlib.metadata as m, json\n"
            "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))\n"
        )
        return {canonicalize_name(n) for n in self.python_json(code)}


def make_device_venv(root: Path, dists: BuiltDists) -> DeviceVenv:
    """A fresh venv at ``root`` with the device wheel installed offline from the wheelhouse.

    Raises:
        AssertionError: The wheelhouse is missing (``make deps`` builds it) or pip failed.
    """
    if not (WHEELHOUSE / ".stamp").is_file():
        raise AssertionError(f"no wheelhouse at {WHEELHOUSE}: run 'make deps' (bootstrap) first")
    # A venv made from the dev venv's interpreter is based on the same base python.
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True,
                   timeout=INSTALL_TIMEOUT_S, env=offline_env())  # fmt: skip
    venv = DeviceVenv(root=root, dists=dists)
    proc = venv.run(
        venv.python, "-m", "pip", "install", "-q", "--no-index", "--find-links", WHEELHOUSE,
        dists.device_wheel, timeout_s=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(f"offline install of the device wheel failed: {proc.stderr[-2000:]}")
    return venv


def wheel_meta(wheel: Path) -> WheelMeta:
    """A wheel's METADATA (PEP 427: ``<name>-<version>.dist-info/METADATA``)."""
    with zipfile.ZipFile(wheel) as archive:
        (path,) = [
            n for n in archive.namelist()
            if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
        ]  # fmt: skip
        with archive.open(path) as raw:
            text = raw.read(_MAX_METADATA_BYTES).decode("utf-8")
    message = Parser().parsestr(text, headersonly=True)
    return WheelMeta(
        name=canonicalize_name(message["Name"]),
        version=message["Version"],
        requires=tuple(message.get_all("Requires-Dist") or ()),
    )


def dev_venv_requires(name: str) -> Sequence[str] | None:
    """A distribution's requirement lines as installed in this (the dev) venv; None if absent."""
    try:
        return metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return None


def _wanted(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": e}) for e in ("", *extras))


def closure(lines: Iterable[str], *, requires: Requires) -> frozenset[str]:
    """The canonical names of every distribution ``lines`` pull in (markers evaluated here).

    Args:
        lines: Requirement lines (``Requires-Dist``); those whose marker is false are skipped.
        requires: A distribution's own requirement lines; None when it is not known (it is
            then named, without its own requirements).
    """
    seen: dict[str, set[str]] = {}
    todo = [Requirement(line) for line in lines if _wanted(Requirement(line), ())]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        for line in requires(name) or ():
            sub = Requirement(line)
            if _wanted(sub, seen[name]):
                todo.append(sub)
    return frozenset(seen)


def local_then_dev(wheels: Mapping[str, WheelMeta]) -> Requires:
    """Requirements from our wheels' METADATA first, then from the dev venv."""

    def requires(name: str) -> Sequence[str] | None:
        meta = wheels.get(name)
        return meta.requires if meta is not None else dev_venv_requires(name)

    return requires


def server_only_names(
    *, device: WheelMeta, server: WheelMeta, requires: Requires
) -> frozenset[str]:
    """The distributions a device installation must never hold.

    Anchored on what the server distribution declares, so that a device requirement cannot
    make a server package "shared" by pulling it in: every distribution the server wheel
    requires by name (but the device wheel), the server wheel itself, and whatever their
    closure pulls in that the device wheel's own requirements (those the server does not also
    name) do not.
    """
    named = {canonicalize_name(Requirement(line).name) for line in server.requires}
    own = [line for line in server.requires if canonicalize_name(Requirement(line).name)
           != device.name]  # fmt: skip
    device_own = [
        line for line in device.requires if canonicalize_name(Requirement(line).name) not in named
    ]
    pulled = closure(own, requires=requires) - closure(device_own, requires=requires)
    return frozenset((named - {device.name}) | {server.name} | pulled)


def server_only(dists: BuiltDists) -> frozenset[str]:
    """:func:`server_only_names` of the two built wheels, resolved against the dev venv."""
    device, server = wheel_meta(dists.device_wheel), wheel_meta(dists.server_wheel)
    requires = local_then_dev({device.name: device, server.name: server})
    return server_only_names(device=device, server=server, requires=requires)


def sbom_names(path: Path) -> frozenset[str]:
    """The canonical names a CycloneDX SBOM lists (metadata.component and components, nested)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    stack = [doc.get("metadata", {}).get("component", {}), *doc.get("components", [])]
    while stack:
        component = stack.pop()
        if isinstance(component, dict) and component.get("name"):
            names.add(canonicalize_name(str(component["name"])))
            stack.extend(component.get("components", []))
    return frozenset(names)


@pytest.fixture(scope="session")
def device_dists(tmp_path_factory: pytest.TempPathFactory) -> BuiltDists:
    """Both distributions, built once per session (``packaging/build.py --out``)."""
    return build_dists(tmp_path_factory.mktemp("dists"))


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory: pytest.TempPathFactory, device_dists: BuiltDists) -> DeviceVenv:
    """A fresh venv with the device wheel alone, installed offline from the wheelhouse."""
    return make_device_venv(tmp_path_factory.mktemp("device-venv") / "venv", device_dists)
