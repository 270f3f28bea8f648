"""The fault matrix: an error and a SIGKILL at every state of the updater, and hundreds of
kills at random byte offsets of the slot write. Afterwards the device always boots a verified
slot, ``ota-state.json`` is consistent, and the next attempt completes the update."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
from otadevkit import OtaFleet, agent, update

from trustfleet.agent.platform import DeviceLayout, FaultPlan, boot, read_fuses, verify_slot
from trustfleet.agent.platform.bootloader import fused_boot_key
from trustfleet.agent.updater._install import install_image_file
from trustfleet.agent.updater._state import STATES
from trustfleet.errors import VerificationFailed
from trustfleet.ota.versions import parse_version

pytestmark = pytest.mark.integration

POINTS = ["checking", "downloading", "installing", "installed", "rebooting", "trial", "committed"]
CASES = [(point, action) for point in POINTS for action in ("error", "kill")]
RANDOM_KILLS = 200
SEED = 20261121


def _assert_consistent(device: Path) -> dict[str, object]:
    state = json.loads((device / "ota-state.json").read_text())
    assert state["schema"] == "trustfleet.ota-state/1" and state["state"] in STATES
    assert parse_version(state["floor"]) <= parse_version(state["installed_version"])
    slots = {state["target_slot"], state["from_slot"]}
    if state["state"] in ("downloading", "installing", "installed", "rebooting", "trial"):
        assert slots == {"a", "b"}, state
    else:
        assert slots in ({None}, {"a", "b"}), state
    booted = agent("boot", "--device", device, "--json")
    assert booted.returncode == 0, booted.stderr  # never bricked
    result = json.loads(booted.stdout)
    assert (result["slot"], result["version"]) in {("a", "1.0.0"), ("b", "2.0.0")}
    return state


@pytest.mark.parametrize(("point", "action"), CASES, ids=[f"{p}-{a}" for p, a in CASES])
def test_a_fault_at_every_state_leaves_a_bootable_device(
    ota_fleet: OtaFleet, point: str, action: str
) -> None:
    device = ota_fleet.device()
    code, doc = update(device, "2.0.0", faults=f"{point}:{action}")
    if action == "kill":
        assert code == -signal.SIGKILL, doc
    else:
        assert doc.get("outcome") in ("failed", "rolled_back"), doc
        assert doc["firmware_version"] == "1.0.0" and doc["slot"] == "a"
    _assert_consistent(device)
    code, doc = update(device, "2.0.0")
    assert (code, doc["outcome"], doc["firmware_version"], doc["slot"]) == (
        0,
        "committed",
        "2.0.0",
        "b",
    ), doc
    state = _assert_consistent(device)
    assert (state["floor"], state["installed_version"]) == ("2.0.0", "2.0.0")


def _install_in_child(layout: DeviceLayout, *, manifest: bytes, source: Path, offset: int) -> int:
    """Fork a process that installs with the fault ``write:kill@offset``; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: only file I/O, then it dies (SIGKILL or _exit)
        try:
            plan = FaultPlan.parse(f"write:kill@{offset}")
            install_image_file(layout.slots(), "b", manifest=manifest, source=source, faults=plan)
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    return status


def test_kills_at_random_offsets_of_the_slot_write_never_brick(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device()
    layout = DeviceLayout(device)
    # A real, TUF-verified download: fail the update at `installing` (the download is kept).
    code, doc = update(device, "2.0.0", faults="installing:error")
    assert doc.get("code") == "ota.fault.injected", doc
    manifest = ota_fleet.target_file("sim-v1/2.0.0/release.json").read_bytes()
    image_sha = json.loads(manifest)["image"]["sha256"]
    source = layout.downloads / f"{image_sha}.verified"
    assert source.is_file()
    length = source.stat().st_size
    fuses = read_fuses(device)
    assert fuses is not None
    key = fused_boot_key(device, fuses)
    rng = random.Random(SEED)
    counts = {
        "kills": 0,
        "killed": 0,
        "partial_refused": 0,
        "booted": 0,
        "bricked": 0,
        "resumed_ok": 0,
    }
    for _ in range(RANDOM_KILLS):
        offset = rng.randrange(0, length)
        status = _install_in_child(layout, manifest=manifest, source=source, offset=offset)
        counts["kills"] += 1
        counts["killed"] += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        partial = verify_slot(layout.slots(), "b", fuses=fuses, boot_key_pem=key)
        counts["partial_refused"] += not partial.ok
        try:
            booted = boot(device, env_store=layout.env_store(), slots=layout.slots())
            counts["booted"] += (booted.slot, booted.version) == ("a", "1.0.0")
        except VerificationFailed:  # a brick is counted, not raised
            counts["bricked"] += 1
        install_image_file(
            layout.slots(), "b", manifest=manifest, source=source, faults=FaultPlan()
        )
        counts["resumed_ok"] += verify_slot(layout.slots(), "b", fuses=fuses, boot_key_pem=key).ok
    print(f"\nslot-write kill matrix (seed {SEED}): " + json.dumps(counts, sort_keys=True))
    assert counts == {
        "kills": RANDOM_KILLS,
        "killed": RANDOM_KILLS,
        "partial_refused": RANDOM_KILLS,
        "booted": RANDOM_KILLS,
        "bricked": 0,
        "resumed_ok": RANDOM_KILLS,
    }
    code, doc = update(device, "2.0.0")  # the interrupted update completes
    assert (code, doc["outcome"], doc["slot"]) == (0, "committed", "b"), doc
