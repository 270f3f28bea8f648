"""Fixtures for TPM tests against a real swtpm, one per test, started from a manufactured copy.

The session manufactures two TPMs (``manufactured`` and ``other_manufactured``, different EKs)
with the root conftest's simulated vendor CA (support/swtpm.py), and each test starts its own
swtpm on a copy of one's state. Tests that need another TPM use the other.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.swtpm import clone_state, manufacture
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    for tool in ("swtpm", "swtpm_setup", "tpm2_quote"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install swtpm swtpm-tools tpm2-tools)")


@pytest.fixture(scope="session")
def manufactured(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """The state folder of one manufactured TPM (never started; copy it)."""
    return manufacture(tmp_path_factory.mktemp("tpm-a"), vendor_ca)


@pytest.fixture(scope="session")
def other_manufactured(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """The state folder of a second TPM of the same vendor (another EK)."""
    return manufacture(tmp_path_factory.mktemp("tpm-b"), vendor_ca)


@pytest.fixture
def swtpm(tmp_path: Path, manufactured: Path) -> Iterator[SwtpmInstance]:
    """A running swtpm on a fresh copy of the manufactured TPM."""
    with SwtpmInstance(clone_state(manufactured, tmp_path / "tpm")) as instance:
        yield instance


@pytest.fixture
def tpm(swtpm: SwtpmInstance) -> Iterator[Tpm]:
    """A ``Tpm`` connected to :func:`swtpm`."""
    with Tpm(tcti=swtpm.tcti) as connection:
        yield connection


@pytest.fixture
def other_tpm(tmp_path: Path, other_manufactured: Path) -> Iterator[Tpm]:
    """A ``Tpm`` on a running copy of the second TPM."""
    state = clone_state(other_manufactured, tmp_path / "other")
    with SwtpmInstance(state) as instance, Tpm(tcti=instance.tcti) as connection:
        yield connection
