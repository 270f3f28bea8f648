"""The distributions' manifest (packaging/dists.toml): which files, requirements and scripts.

Tooling, not product code: read by ``packaging/build.py`` and by the unit tests of
tests/unit/packaging. No third-party import except ``packaging`` (a dependency of pip).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_EPOCH",
    "BuildError",
    "Dist",
    "load_dists",
    "project_version",
    "select_files",
    "source_date_epoch",
    "source_files",
]

DEFAULT_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the first date a zip entry can carry
ROOT = Path(__file__).resolve().parent.parent
_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = (".pyc", ".pyo", ".so", "~", ".swp", ".orig", ".rej")


class BuildError(Exception):
    """A build that cannot go on; the message is the one line the builder prints."""


@dataclass(frozen=True)
class Dist:
    """One distribution as declared in dists.toml."""

    key: str
    name: str
    summary: str
    readme: str
    patterns: tuple[str, ...]
    requires: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]
    lazy_imports: tuple[str, ...] = ()
    requires_agent: bool = False


def _dist(key: str, table: dict[str, object]) -> Dist:
    try:
        scripts = table.get("scripts", {})
        if not isinstance(scripts, dict):
            raise TypeError("scripts must be a table")
        return Dist(
            key=key,
            name=str(table["name"]),
            summary=str(table["summary"]),
            readme=str(table["readme"]),
            patterns=tuple(str(p) for p in table["files"]),  # type: ignore[attr-defined]
            requires=tuple(str(r) for r in table["requires"]),  # type: ignore[attr-defined]
            scripts=tuple(sorted((str(k), str(v)) for k, v in scripts.items())),
            lazy_imports=tuple(str(m) for m in table.get("lazy_imports", ())),  # type: ignore[attr-defined]
            requires_agent=bool(table.get("requires_agent", False)),
        )
    except (KeyError, TypeError) as exc:
        raise BuildError(f"packaging/dists.toml: [{key}] is incomplete ({exc})") from exc


def load_dists(root: Path = ROOT) -> dict[str, Dist]:
    """Read packaging/dists.toml: ``{"agent": Dist, "server": Dist}``."""
    path = root / "packaging" / "dists.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from exc
    if set(data) != {"agent", "server"}:
        raise BuildError(f"{path}: expected the tables [agent] and [server], got {sorted(data)}")
    return {key: _dist(key, data[key]) for key in ("agent", "server")}


def project_version(root: Path = ROOT) -> str:
    """The one version: the root pyproject's ``[project] version``."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        return str(data["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read the version from {root / 'pyproject.toml'}: {exc}") from exc


def source_date_epoch(root: Path = ROOT) -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time when in git, else 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise BuildError(f"SOURCE_DATE_EPOCH must be whole seconds, got {value!r}")
        return int(value)
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        return int(out) if out.isdigit() else DEFAULT_EPOCH
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_EPOCH


def source_files(src: Path) -> list[str]:
    """Every shippable file under src/trustfleet, as sorted POSIX paths relative to src."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src / "trustfleet"):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and d[0] != ".")
        for name in filenames:
            if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES):
                continue
            found.append(Path(dirpath, name).relative_to(src).as_posix())
    return sorted(found)


def _matches(path: str, pattern: str) -> bool:
    if pattern.endswith("/**"):
        return path.startswith(pattern[:-2])
    return path == pattern or fnmatch.fnmatchcase(path, pattern)


def select_files(dists: dict[str, Dist], files: list[str]) -> dict[str, list[str]]:
    """Split ``files`` between the distributions: the agent's by its globs, the server the rest.

    Raises:
        BuildError: An agent pattern matching no file (a typo ships a broken wheel).
    """
    agent = dists["agent"]
    for pattern in agent.patterns:
        if not any(_matches(f, pattern) for f in files):
            raise BuildError(f"packaging/dists.toml: agent pattern {pattern!r} matches no file")
    mine = [f for f in files if any(_matches(f, p) for p in agent.patterns)]
    taken = set(mine)
    rest = [
        f for f in files if f not in taken and any(_matches(f, p) for p in dists["server"].patterns)
    ]
    return {"agent": mine, "server": rest}
