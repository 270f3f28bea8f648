"""The simulated bootloader: slot choice, boot counter, verified boot, measurement."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from otakit import BootKey, image_bytes, make_device, manifest_for

from trustfleet.agent.platform import BootEnv, DeviceLayout, FileBootEnv, boot
from trustfleet.errors import VerificationFailed


@dataclass
class Recorder:
    calls: list[tuple[int, str, bytes, str]] = field(default_factory=list)

    def extend(self, pcr: int, component: str, digest: bytes, detail: str) -> None:
        self.calls.append((pcr, component, digest, detail))


@pytest.fixture
def key() -> BootKey:
    return BootKey()


@pytest.fixture
def device(tmp_path: Path, key: BootKey) -> DeviceLayout:
    v1 = image_bytes("1.0.0")
    layout = make_device(tmp_path / "dev", key, v1, manifest_for(key, v1, version="1.0.0"))
    v2 = image_bytes("2.0.0")
    slot_b = layout.slots().path("b")
    slot_b.mkdir(parents=True)
    (slot_b / "image.bin").write_bytes(v2)
    (slot_b / "release.json").write_bytes(manifest_for(key, v2, version="2.0.0"))
    return layout


def _boot(layout: DeviceLayout, measurer: Recorder | None = None):  # type: ignore[no-untyped-def]
    return boot(
        layout.directory, env_store=layout.env_store(), slots=layout.slots(), measurer=measurer
    )


def test_boots_the_environment_slot_and_measures_it(device: DeviceLayout) -> None:
    recorder = Recorder()
    result = _boot(device, recorder)
    assert (result.slot, result.version, result.fell_back) == ("a", "1.0.0", False)
    import hashlib

    digest = hashlib.sha256(image_bytes("1.0.0")).digest()
    assert recorder.calls == [(9, "image", digest, "slot a release 1.0.0")]


def test_trial_boots_count_then_fall_back(device: DeviceLayout) -> None:
    env = device.env_store()
    env.write(BootEnv(boot_slot="b", upgrade_available=True, bootlimit=3))
    for count in (1, 2, 3):
        result = _boot(device)
        assert (result.slot, result.fell_back) == ("b", False)
        assert env.read().bootcount == count
    result = _boot(device)
    assert (result.slot, result.version, result.fell_back) == ("a", "1.0.0", True)
    assert "failed 3 trial boot" in result.reason
    assert env.read() == BootEnv(boot_slot="a", upgrade_available=False, bootcount=0)
    assert _boot(device).slot == "a"  # the fallback sticks


def _no_manifest(slot: Path, key: BootKey) -> None:
    (slot / "release.json").unlink()


def _flip_byte(slot: Path, key: BootKey) -> None:
    data = bytearray((slot / "image.bin").read_bytes())
    data[1000] ^= 1
    (slot / "image.bin").write_bytes(bytes(data))


def _truncate(slot: Path, key: BootKey) -> None:
    data = (slot / "image.bin").read_bytes()
    (slot / "image.bin").write_bytes(data[:-1])


def _bad_signature(slot: Path, key: BootKey) -> None:
    image = (slot / "image.bin").read_bytes()
    forged = key.sign(image + b"x")
    (slot / "release.json").write_bytes(manifest_for(key, image, version="2.0.0", signature=forged))


def _other_key(slot: Path, key: BootKey) -> None:
    image = (slot / "image.bin").read_bytes()
    (slot / "release.json").write_bytes(manifest_for(BootKey(), image, version="2.0.0"))


def _other_model(slot: Path, key: BootKey) -> None:
    image = (slot / "image.bin").read_bytes()
    (slot / "release.json").write_bytes(manifest_for(key, image, version="2.0.0", model="other-v1"))


def _garbage_manifest(slot: Path, key: BootKey) -> None:
    (slot / "release.json").write_bytes(b"{not json")


TAMPERING = {
    "no-manifest": (_no_manifest, "no release.json"),
    "image-byte-flipped": (_flip_byte, "does not match"),
    "image-truncated": (_truncate, "does not match"),
    "signature-forged": (_bad_signature, "boot signature does not verify"),
    "signed-by-another-key": (_other_key, "not the fused one"),
    "other-model": (_other_model, "model 'other-v1'"),
    "manifest-garbage": (_garbage_manifest, "manifest refused"),
}


@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
def test_a_slot_that_does_not_verify_never_runs(
    device: DeviceLayout, key: BootKey, case: str
) -> None:
    tamper, why = TAMPERING[case]
    tamper(device.slots().path("b"), key)
    device.env_store().write(BootEnv(boot_slot="b", upgrade_available=True))
    recorder = Recorder()
    result = _boot(device, recorder)
    assert (result.slot, result.version, result.fell_back) == ("a", "1.0.0", True)
    assert why in result.reason
    assert device.env_store().read() == BootEnv(boot_slot="a")
    assert [c[3] for c in recorder.calls] == ["slot a release 1.0.0"]


def test_no_bootable_slot_is_a_clear_error(device: DeviceLayout, key: BootKey) -> None:
    _flip_byte(device.slots().path("a"), key)
    _no_manifest(device.slots().path("b"), key)
    with pytest.raises(VerificationFailed) as err:
        _boot(device)
    assert err.value.code == "boot.no_slot"
    assert "a: image" in err.value.message and "b: no release.json" in err.value.message


def test_a_boot_key_that_is_not_the_fused_one_stops_the_boot_rom(device: DeviceLayout) -> None:
    (device.directory / "boot-key.pem").write_bytes(BootKey().pem)
    with pytest.raises(VerificationFailed) as err:
        _boot(device)
    assert err.value.code == "boot.key"


def test_a_corrupt_environment_reads_as_the_default(device: DeviceLayout) -> None:
    path = device.directory / "bootenv.json"
    for raw in ("{", json.dumps({"boot_slot": "c"}), json.dumps([1]), "x" * 10_000):
        path.write_text(raw)
        assert FileBootEnv(path).read() == BootEnv()
        assert _boot(device).slot == "a"
