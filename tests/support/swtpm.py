"""Manufactured software TPMs for the suites that run swtpm: manufacture once, copy per test.

Manufacturing a TPM (``swtpm_setup``: EKs and their certificates) takes about a second, so a
session manufactures two TPMs of one simulated vendor (``manufactured_tpm`` and
``other_manufactured_tpm``, different EKs) and every test starts its own swtpm on a copy of one's
state. Copies of one state are clones of one TPM (same EK); a test that needs another TPM uses
the other. The root conftest loads this module as a plugin; the fixtures are session-lazy, so
only the suites that ask for them (each skips when swtpm is missing) manufacture anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported when used: every test session loads this plugin
    from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance

__all__ = [
    "STATE_FILE",
    "clone_state",
    "manufacture",
    "manufactured_tpm",
    "other_manufactured_tpm",
    "swtpm",
    "vendor_ca",
]

STATE_FILE = "tpm2-00.permall"
"""The file swtpm keeps a TPM's NVRAM in: the whole state of a powered-off TPM."""


def manufacture(folder: Path, ca: ManufacturerCa) -> Path:
    """Manufacture a TPM in ``folder`` (never started: copy it with :func:`clone_state`)."""
    from trustfleet.keystore.tpm import SwtpmInstance

    SwtpmInstance(folder, ca=ca).setup()
    assert (folder / STATE_FILE).is_file()
    return folder


def clone_state(manufactured: Path, target: Path) -> Path:
    """Copy a manufactured TPM's state (its NVRAM file) into the new folder ``target``."""
    target.mkdir(parents=True, mode=0o700)
    shutil.copy2(manufactured / STATE_FILE, target / STATE_FILE)
    return target


@pytest.fixture(scope="session")
def vendor_ca(tmp_path_factory: pytest.TempPathFactory) -> ManufacturerCa:
    """The simulated TPM manufacturer's CA (files in a session folder)."""
    from trustfleet.keystore.tpm import ManufacturerCa

    return ManufacturerCa(tmp_path_factory.mktemp("vendor-ca"))


@pytest.fixture(scope="session")
def manufactured_tpm(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """The state folder of one manufactured TPM (never started; copy it)."""
    return manufacture(tmp_path_factory.mktemp("tpm-a"), vendor_ca)


@pytest.fixture(scope="session")
def other_manufactured_tpm(
    tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa
) -> Path:
    """The state folder of a second TPM of the same vendor (another EK)."""
    return manufacture(tmp_path_factory.mktemp("tpm-b"), vendor_ca)


@pytest.fixture
def swtpm(tmp_path: Path, manufactured_tpm: Path) -> Iterator[SwtpmInstance]:
    """A running swtpm on a fresh copy of the manufactured TPM, stopped after the test."""
    from trustfleet.keystore.tpm import SwtpmInstance

    with SwtpmInstance(clone_state(manufactured_tpm, tmp_path / "tpm")) as instance:
        yield instance
