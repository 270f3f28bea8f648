"""Fixtures of the attestation service tests (helpers in attestkit.py, a unique module name)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.swtpm import clone_state, manufacture
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    for tool in ("swtpm", "swtpm_setup"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install swtpm swtpm-tools)")


@pytest.fixture(scope="session")
def manufactured_tpm(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """One manufactured TPM state (copied per test)."""
    return manufacture(tmp_path_factory.mktemp("att-tpm"), vendor_ca)


@pytest.fixture
def swtpm(tmp_path: Path, manufactured_tpm: Path) -> Iterator[SwtpmInstance]:
    """A running swtpm on a fresh copy of the manufactured TPM."""
    with SwtpmInstance(clone_state(manufactured_tpm, tmp_path / "tpm")) as instance:
        yield instance


@pytest.fixture(scope="session")
def t0(manufactured_tpm: Path) -> datetime:
    """The tests' "now": the real time once the TPM exists (its EK certificate is issued at the
    real time, so a fixed date here would make the suite pass only near the day it was written)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
