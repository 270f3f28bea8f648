"""Constants shared by the keystore integration tests (a unique name, unlike conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SO_PIN = "so-PIN-for-tests-0001"
USER_PIN = "user-PIN-for-tests-0001"

MakeHome = Callable[[str], Path]
"""Creates a SoftHSM2 home (conf + token dir) by name under the test's tmp dir."""
