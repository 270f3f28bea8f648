"""A provisioned device updates itself through the real server: delta, full image, rollback."""

from __future__ import annotations

import hashlib
import json

import pytest
from otadevkit import OtaFleet, agent, assert_update, update

pytestmark = pytest.mark.integration


def _slot_digest(device, slot: str) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256((device / "slots" / slot / "image.bin").read_bytes()).hexdigest()


def test_factory_installs_the_newest_release_into_slot_a(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device()
    assert json.loads((device / "fuses.json").read_text())["model"] == "sim-v1"
    assert (device / "tuf" / "metadata" / "root.json").is_file()
    assert (
        _slot_digest(device, "a")
        == hashlib.sha256(ota_fleet.images["sim-v1/1.0.0"].read_bytes()).hexdigest()
    )
    booted = agent("boot", "--device", device, "--json")
    assert booted.returncode == 0, booted.stderr
    assert json.loads(booted.stdout) == {
        "slot": "a",
        "version": "1.0.0",
        "fell_back": False,
        "reason": "",
    }


def test_update_by_delta_moves_the_device_to_v2(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device()
    assert_update(device, "2.0.0", code=0, outcome="committed", firmware="2.0.0", slot="b")
    state = json.loads((device / "ota-state.json").read_text())
    assert (state["delta"], state["floor"], state["installed_version"]) == (True, "2.0.0", "2.0.0")
    assert json.loads((device / "bootenv.json").read_text())["upgrade_available"] == 0
    expected = hashlib.sha256(ota_fleet.images["sim-v1/2.0.0"].read_bytes()).hexdigest()
    assert _slot_digest(device, "b") == expected
    assert update(device, "2.0.0")[1]["outcome"] == "up_to_date"


@pytest.mark.parametrize("damage", ["missing", "corrupt"], ids=["delta-missing", "delta-corrupt"])
def test_a_bad_delta_falls_back_to_the_full_image(ota_fleet: OtaFleet, damage: str) -> None:
    delta = ota_fleet.target_file("sim-v1/2.0.0/from-1.0.0.delta")
    original = delta.read_bytes()
    try:
        if damage == "missing":
            delta.unlink()
        else:
            delta.write_bytes(original[:100] + bytes(256) + original[356:])
        device = ota_fleet.device()
        code, doc = update(device, "2.0.0")
    finally:
        delta.write_bytes(original)
    assert (code, doc["outcome"], doc["firmware_version"]) == (0, "committed", "2.0.0"), doc
    assert json.loads((device / "ota-state.json").read_text())["delta"] is False


def test_a_failed_health_check_rolls_back_to_v1(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device(faults_file=True)
    doc = assert_update(device, "2.0.0", code=12, outcome="rolled_back", firmware="1.0.0", slot="a")
    assert "trial boot" in doc["reason"]
    state = json.loads((device / "ota-state.json").read_text())
    assert (state["floor"], state["installed_version"]) == ("1.0.0", "1.0.0")
    assert json.loads((device / "bootenv.json").read_text()) == {
        "boot_slot": "a",
        "bootcount": 0,
        "bootlimit": 3,
        "upgrade_available": 0,
    }
