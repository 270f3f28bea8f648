"""Fixtures of the device-side attestation tests (helpers in attdevkit.py, a unique name).

The session manufactures one TPM with the simulated vendor CA and creates its AK (as the
factory does); every test copies that state into its own device folder. Every swtpm a test
powers on is powered off at teardown through the device's pid file, so no swtpm outlives a
test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from attdevkit import BootKey, make_device

from support.swtpm import STATE_FILE
from support.tools import require_tools
from trustfleet.agent.platform import DeviceLayout
from trustfleet.agent.platform.tpm import DeviceTpm
from trustfleet.keystore.tpm import ManufacturerCa, SwtpmInstance, Tpm


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    require_tools(
        "swtpm",
        "swtpm_setup",
        "tpm2_checkquote",
        hint="apt-get install swtpm swtpm-tools tpm2-tools",
    )


def _manufacture(folder: Path, ca: ManufacturerCa) -> Path:
    with SwtpmInstance(folder, ca=ca) as swtpm, Tpm(tcti=swtpm.tcti) as tpm:
        tpm.create_ak()
    for leftover in folder.iterdir():
        if leftover.name != STATE_FILE:
            leftover.unlink()
    return folder


@pytest.fixture(scope="session")
def manufactured_tpm(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """A manufactured TPM state with its AK (copied per device)."""
    return _manufacture(tmp_path_factory.mktemp("attdev-tpm"), vendor_ca)


@pytest.fixture(scope="session")
def other_tpm(tmp_path_factory: pytest.TempPathFactory, vendor_ca: ManufacturerCa) -> Path:
    """Another TPM of the same vendor (another EK and AK)."""
    return _manufacture(tmp_path_factory.mktemp("attdev-tpm2"), vendor_ca)


@pytest.fixture(scope="session")
def boot_key() -> BootKey:
    """The release signing key whose hash the devices' fuses hold."""
    return BootKey()


@pytest.fixture
def device(tmp_path: Path, boot_key: BootKey, manufactured_tpm: Path) -> Iterator[DeviceLayout]:
    """A device folder on release 1.0.0 with its TPM (powered off); powered off at the end."""
    layout = make_device(tmp_path / "dev", boot_key, manufactured_tpm)
    try:
        yield layout
    finally:
        DeviceTpm(layout.directory).power().power_off()
