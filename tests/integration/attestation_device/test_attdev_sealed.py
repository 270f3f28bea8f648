"""Sealed storage across boots, updates, rollbacks and a tampered boot (real swtpm)."""

from __future__ import annotations

import hashlib
import json

import pytest
from attdevkit import MODEL, BootKey, image_bytes, install

from trustfleet.agent.platform import BootEnv, DeviceLayout
from trustfleet.agent.platform.faults import Faults
from trustfleet.agent.platform.measured_boot import DeviceTpm, measured_boot
from trustfleet.agent.sealed import SealedStorage, boot_pcr_values, record_boot
from trustfleet.errors import VerificationFailed
from trustfleet.keystore.tpm import Tpm


def _boot(layout: DeviceLayout) -> Tpm:
    device = DeviceTpm(layout.directory)
    device.power_on()
    tpm = device.open()
    glitch = Faults.for_simulation(layout.directory).boot_skip_verify  # the test seam
    measured_boot(layout.directory, tpm=tpm, env_store=layout.env_store(), slots=layout.slots(),
                  skip_verify=glitch)  # fmt: skip
    return tpm


def _pcrs(version: str) -> dict[int, bytes]:
    return boot_pcr_values(model=MODEL, image_sha256=hashlib.sha256(image_bytes(version)).digest())


def _manifest(layout: DeviceLayout, slot: str) -> bytes:
    return (layout.slots().path(slot) / "release.json").read_bytes()  # type: ignore[arg-type]


def test_state_survives_reboots(device: DeviceLayout) -> None:
    with _boot(device) as tpm:
        first = record_boot(device.directory, tpm=tpm, model=MODEL,
                            slot_manifest=_manifest(device, "a"),
                            boot={"slot": "a", "version": "1.0.0"})  # fmt: skip
        storage = SealedStorage(device.directory, tpm=tpm)
        storage.write({**storage.read(), "secret": "kept"})
    assert first is not None and first["boots"] == 1
    with _boot(device) as tpm:
        state = SealedStorage(device.directory, tpm=tpm).read()
    assert state["secret"] == "kept"
    assert b"kept" not in (device.directory / "state.enc").read_bytes()


def test_a_legitimate_update_keeps_the_state_readable(
    device: DeviceLayout, boot_key: BootKey
) -> None:
    with _boot(device) as tpm:
        storage = SealedStorage(device.directory, tpm=tpm)
        storage.initialize(_pcrs("1.0.0"))
        storage.write({"secret": "kept"})
        # The updater wrote slot b; right before the switch it reseals to both boots.
        install(device.directory, "b", image_bytes("2.0.0"),
                boot_key.manifest(image_bytes("2.0.0"), version="2.0.0"))  # fmt: skip
        storage.prepare_update(current=_pcrs("1.0.0"), following=_pcrs("2.0.0"))
    device.env_store().write(BootEnv(boot_slot="b", upgrade_available=True))
    with _boot(device) as tpm:  # the new slot, on trial
        storage = SealedStorage(device.directory, tpm=tpm)
        assert storage.read()["secret"] == "kept"
        storage.settle(on_trial=True)  # still two blobs: a rollback must unseal
    # A rollback to slot a (the old release) still reads the state.
    device.env_store().write(BootEnv(boot_slot="a"))
    with _boot(device) as tpm:
        assert SealedStorage(device.directory, tpm=tpm).read()["secret"] == "kept"
    # Or the commit: the next boot of b makes its blob the only one.
    device.env_store().write(BootEnv(boot_slot="b"))
    with _boot(device) as tpm:
        storage = SealedStorage(device.directory, tpm=tpm)
        storage.settle(on_trial=False)
        assert storage.read()["secret"] == "kept"
    assert not (DeviceTpm(device.directory).state_dir / "datakey.next.sealed").exists()
    device.env_store().write(BootEnv(boot_slot="a"))
    with _boot(device) as tpm, pytest.raises(VerificationFailed) as err:
        SealedStorage(device.directory, tpm=tpm).read()  # the old release no longer opens it
    assert err.value.code == "sealed.locked"


def test_a_tampered_boot_cannot_unseal(device: DeviceLayout) -> None:
    with _boot(device) as tpm:
        storage = SealedStorage(device.directory, tpm=tpm)
        storage.initialize(_pcrs("1.0.0"))
        storage.write({"secret": "kept"})
    image = device.slots().image_path("a")
    data = bytearray(image.read_bytes())
    data[0] ^= 1
    image.write_bytes(bytes(data))  # signature and manifest untouched
    (device.directory / "faults.json").write_text(json.dumps({"boot": "skip_verify"}))
    with _boot(device) as tpm:  # the glitched bootloader runs it anyway
        storage = SealedStorage(device.directory, tpm=tpm)
        with pytest.raises(VerificationFailed) as err:
            storage.read()
        assert err.value.code == "sealed.locked"
        assert record_boot(device.directory, tpm=tpm, model=MODEL,
                           slot_manifest=_manifest(device, "a"),
                           boot={"slot": "a", "version": "1.0.0"}) is None  # fmt: skip


def test_an_altered_state_file_is_refused(device: DeviceLayout) -> None:
    with _boot(device) as tpm:
        storage = SealedStorage(device.directory, tpm=tpm)
        storage.initialize(_pcrs("1.0.0"))
        storage.write({"secret": "kept"})
        data = bytearray(storage.state_path.read_bytes())
        data[-1] ^= 1
        storage.state_path.write_bytes(bytes(data))
        with pytest.raises(VerificationFailed) as err:
            storage.read()
    assert err.value.code == "sealed.state.integrity"
