"""``trustfleet --version`` and ``trustfleet-agent --version`` print the one version: the root
pyproject's ``[project] version`` (ADR 0020), read from the installed package metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _pyproject_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return str(data["project"]["version"])


@pytest.mark.parametrize("command", ["trustfleet", "trustfleet-agent"])
def test_version_is_the_pyproject_version(command: str) -> None:
    result = subprocess.run([str(BIN / command), "--version"], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{command} {_pyproject_version()}"
