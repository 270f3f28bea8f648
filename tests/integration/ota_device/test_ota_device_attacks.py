"""Device-level attacks: whatever the request, only a release TUF and the boot chain accept
is installed, and a refused one leaves the trusted state and the active slot unchanged."""

from __future__ import annotations

import json
import shutil

import pytest
from otadevkit import OtaFleet, agent, agent_online, trusted_state, update

from support.waiting import eventually

pytestmark = pytest.mark.integration

ROWS = {
    # id: (version asked for, outcome, code)
    "wrong-hardware-model": ("5.0.0", "refused", "ota.release.unknown"),
    "version-below-floor": ("0.9.0", "refused", "ota.version.below_floor"),
    "min-version-above-installed": ("3.0.0", "refused", "ota.version.min_version"),
    "bad-boot-signature": ("4.0.0", "failed", "ota.boot.invalid"),
    "no-such-release": ("9.9.9", "refused", "ota.release.unknown"),
    "not-a-version": ("../../etc/passwd", "refused", "ota.version.invalid"),
}


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_refused_release_leaves_the_device_unchanged(ota_fleet: OtaFleet, row: str) -> None:
    version, outcome, code = ROWS[row]
    device = ota_fleet.device()
    before = trusted_state(device)
    exit_code, doc = update(device, version)
    assert (doc["outcome"], doc["code"], doc["slot"], doc["firmware_version"]) == (
        outcome,
        code,
        "a",
        "1.0.0",
    ), doc
    assert exit_code == {"refused": 10, "failed": 11}[outcome]
    assert trusted_state(device) == before
    booted = agent("boot", "--device", device, "--json")
    assert json.loads(booted.stdout)["slot"] == "a"
    assert not (device / "slots" / "b" / "release.json").exists()


def test_a_device_without_a_boot_chain_refuses_updates(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device()
    (device / "fuses.json").unlink()
    shutil.rmtree(device / "slots")
    exit_code, doc = update(device, "2.0.0")
    assert (exit_code, doc["outcome"], doc["code"]) == (10, "refused", "ota.no_boot_chain")
    once = agent("run", "--device", device, "--once", "--json")
    assert once.returncode == 0, once.stderr  # the agent itself works as before
    assert json.loads(once.stdout)["firmware_version"] == ""


def test_malicious_update_command_arguments_are_ignored(ota_fleet: OtaFleet) -> None:
    device = ota_fleet.device()
    before = trusted_state(device)
    with agent_online(ota_fleet, device) as mqtt:
        evil = {
            "version": "9.9.9",
            "url": "https://evil.example/image.bin",
            "path": "/etc/shadow",
            "sha256": "0" * 64,
            "image": "AAAA" * 64,
            "metadata_url": "https://evil.example/tuf/",
        }
        mqtt.send({"id": "c-evil", "name": "update", "args": evil})
        answer = mqtt.wait_for("cmd/result", lambda m: m.get("id") == "c-evil")
        assert answer["ok"] is True and answer["result"] == {"accepted": True}
        status = mqtt.wait_for("ota/status", lambda m: m["state"] == "refused")
        assert (status["version"], status["code"]) == ("9.9.9", "ota.release.unknown")
        mqtt.send({"id": "c-report", "name": "report", "args": {}})
        report = mqtt.wait_for("cmd/result", lambda m: m.get("id") == "c-report")
        assert (report["result"]["firmware_version"], report["result"]["slot"]) == ("1.0.0", "a")
    assert trusted_state(device) == before
    assert "evil" not in (device / "ota-state.json").read_text()
    downloads = device / "tuf" / "downloads"
    assert not downloads.exists() or not any(downloads.iterdir())


def test_an_update_command_on_ota_cmd_reboots_the_running_agent_into_v2(
    ota_fleet: OtaFleet,
) -> None:
    device = ota_fleet.device()
    with agent_online(ota_fleet, device) as mqtt:
        update_command = {
            "id": "c-up",
            "name": "update",
            "args": {"version": "2.0.0", "campaign": "camp-1"},
        }
        mqtt.send(update_command, leaf="ota/cmd")  # where campaigns send it
        committed = mqtt.wait_for("ota/status", lambda m: m["state"] == "committed")
        assert (committed["version"], committed["campaign"]) == ("2.0.0", "camp-1")
        states = [m["state"] for m in mqtt.messages("ota/status")]
        assert states[0] == "checking" and "rebooting" in states
        assert states.count("downloading") <= 6

        # The agent booted again (re-executed) after the reboot: a second agent.started, which
        # may arrive after the committed report (the new agent sends that first).
        def starts() -> list[dict[str, object]]:
            return [m for m in mqtt.messages("events") if m.get("type") == "agent.started"]

        assert eventually(lambda: len(starts()) >= 2, timeout_s=60, poll_s=0.2), starts()
    state = json.loads((device / "ota-state.json").read_text())
    assert (state["state"], state["floor"], state["installed_version"]) == (
        "committed",
        "2.0.0",
        "2.0.0",
    )
