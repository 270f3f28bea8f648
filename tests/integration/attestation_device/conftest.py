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

from support.swtpm import STATE_FILE, clone_state
from support.tools import require_tools
from trustfleet.agent.platform import DeviceLayout
from trustfleet.agent.platform.measured_boot import DeviceTpm
from trustfleet.keystore.tpm import SwtpmInstance, Tpm


@pytest.fixture(scope="session", autouse=True)
def _needs_swtpm() -> None:
    require_tools(
        "swtpm",
        "swtpm_setup",
        "tpm2_checkquote",
        hint="apt-get install swtpm swtpm-tools tpm2-tools",
    )


def _with_ak(manufactured: Path, folder: Path) -> Path:
    with SwtpmInstance(clone_state(manufactured, folder)) as swtpm, Tpm(tcti=swtpm.tcti) as tpm:
        tpm.create_ak()
    for leftover in folder.iterdir():
        if leftover.name != STATE_FILE:
            leftover.unlink()
    return folder


@pytest.fixture(scope="session")
def manufactured_tpm(tmp_path_factory: pytest.TempPathFactory, manufactured_tpm: Path) -> Path:
    """The manufactured TPM with its AK created, as the factory does (copied per device)."""
    return _with_ak(manufactured_tpm, tmp_path_factory.mktemp("attdev") / "tpm")


@pytest.fixture(scope="session")
def other_tpm(tmp_path_factory: pytest.TempPathFactory, other_manufactured_tpm: Path) -> Path:
    """Another TPM of the same vendor (another EK and AK)."""
    return _with_ak(other_manufactured_tpm, tmp_path_factory.mktemp("attdev") / "tpm")


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
