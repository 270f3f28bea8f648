"""What a test needs installed: a skip that names the missing tool and how to install it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

__all__ = ["have_tool", "require_tools"]


def have_tool(tool: str) -> bool:
    """Whether ``tool`` is on PATH (or in /usr/sbin, where mosquitto lives)."""
    return shutil.which(tool) is not None or Path("/usr/sbin", tool).exists()


def require_tools(*tools: str, hint: str = "") -> None:
    """Skip the test unless every tool is installed; ``hint`` says how to install them."""
    for tool in tools:
        if not have_tool(tool):
            pytest.skip(f"{tool} is not installed" + (f" ({hint})" if hint else ""))
