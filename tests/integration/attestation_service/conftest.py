"""Fixtures of the attestation service tests (helpers in attestkit.py, a unique module name)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.tools import require_tools


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    require_tools("swtpm", "swtpm_setup", hint="apt-get install swtpm swtpm-tools")


@pytest.fixture(scope="session")
def t0(manufactured_tpm: Path) -> datetime:
    """The tests' "now": the real time once the TPM exists (its EK certificate is issued at the
    real time, so a fixed date here would make the suite pass only near the day it was written)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
