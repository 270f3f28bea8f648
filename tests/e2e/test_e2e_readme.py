"""Issue 9 section 8: the README's "Using it", command by command in its order, works.

A real server and real agents (their own SoftHSM2 tokens and swtpm), kept small: two devices
and a 1 MiB image. The second test is the order the README used to give (devices provisioned
before any release: no A/B slots, no TPM): the campaign leaves such a device out with the
reason instead of halting at 100 % failure, and ``attest run`` says why it cannot challenge it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import TRUSTFLEET, RunningServer, run_cli, running_server
from support.waiting import wait_for
from trustfleet.sim.process import ManagedProcess

pytestmark = pytest.mark.e2e

WAIT_S = 240
STOP_TIMEOUT_S = 30
IMAGE_SIZE = "1MiB"


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Start ``trustfleet agent run`` for a device folder; all are stopped (by group) after."""
    started: list[ManagedProcess] = []

    def start(device: Path) -> None:
        argv = [TRUSTFLEET, "agent", "run", "--device", device]
        log = tmp_path / f"agent-{device.name}.log"
        started.append(ManagedProcess(argv, log=log, name=f"agent {device.name}").start())

    yield start
    for process in started:
        process.stop(timeout_s=STOP_TIMEOUT_S)


def _ok(server: RunningServer, *args: str | os.PathLike[str]) -> Any:
    """``trustfleet ARGS --home HOME --json``: the parsed output (the command must succeed)."""
    return server.cli_json(*args)


def _wait(what: str, probe: Callable[[], Any]) -> Any:
    return wait_for(probe, what=what, timeout_s=WAIT_S, poll_s=0.5)


def _states(server: RunningServer) -> dict[str, str]:
    return {d["id"]: d["state"] for d in _ok(server, "device", "list")["devices"]}


def _release(server: RunningServer, work: Path, version: str) -> None:
    image = work / f"v{version}.bin"
    made = run_cli("sim", "image", "--version", version, "--size", IMAGE_SIZE, "--out", image)
    assert made.returncode == 0, made.stderr
    _ok(server, "release", "build", "--version", version, "--image", image)
    _ok(server, "release", "publish", "--version", version)
    if version != "1.0.0":  # the README verifies the release it rolls out
        verified = _ok(server, "release", "verify", "--version", version)
        assert verified["ok"] is True, verified


def _campaign_done(server: RunningServer, campaign_id: str) -> Callable[[], Any]:
    def probe() -> Any:
        status = _ok(server, "campaign", "status", campaign_id)
        return status if status["state"] in ("completed", "halted", "aborted") else None

    return probe


def test_readme_using_it_in_its_order(tmp_path: Path, agents: Callable[[Path], None]) -> None:
    with running_server(tmp_path) as server:
        _release(server, tmp_path, "1.0.0")
        made = _ok(server, "factory", "provision", "--out", tmp_path / "devices", "--count", "2")
        devices = {d["device_id"]: Path(d["directory"]) for d in made["devices"]}
        for directory in devices.values():
            agents(directory)
        _wait("both devices to enroll",
              lambda: all(_states(server).get(d) == "enrolled" for d in devices))  # fmt: skip
        kept, revoked = sorted(devices)
        _ok(server, "device", "revoke", revoked, "--reason", "keyCompromise")
        assert _states(server)[revoked] == "revoked"
        _release(server, tmp_path, "1.1.0")
        created = _ok(server, "campaign", "create", "--release", "1.1.0",
                      "--waves", "1,10,50,100%", "--max-failure-rate", "5%")  # fmt: skip
        assert created["excluded"] == []
        status = _wait("the campaign to end", _campaign_done(server, created["id"][:12]))
        assert status["state"] == "completed", status
        assert {d["device_id"]: d["state"] for d in status["devices"]} == {kept: "committed"}
        verdict = _ok(server, "attest", "run", kept)
        assert verdict["ok"] is True and verdict["release"] == "1.1.0", verdict
        assert server.sim is not None  # the custodians' PIN files (README: they type them)
        rotated = _ok(server, "ota", "rotate-root", *server.sim.ceremony_args())
        assert rotated["roles"]["root"]["version"] == 2
        narrow = run_cli("campaign", "list", "--home", server.home, env={"COLUMNS": "80"})
        assert narrow.returncode == 0, narrow.stderr
        assert created["id"][:12] in narrow.stdout
        assert max(len(line) for line in narrow.stdout.splitlines()) <= 80


def test_device_provisioned_before_any_release_is_told_apart(
    tmp_path: Path, agents: Callable[[Path], None]
) -> None:
    """Old code: the campaign halted at 100 % failure; attest run said 'POST /attest/v1/ak'."""
    with running_server(tmp_path) as server:
        made = _ok(server, "factory", "provision", "--out", tmp_path / "early", "--count", "1")
        (early,) = [(d["device_id"], Path(d["directory"])) for d in made["devices"]]
        device_id, directory = early
        agents(directory)
        _wait("the device to enroll", lambda: _states(server).get(device_id) == "enrolled")
        _release(server, tmp_path, "1.0.0")
        first = _ok(server, "campaign", "create", "--release", "1.0.0", "--waves", "100%",
                    "--max-failure-rate", "5%")  # fmt: skip
        status = _wait("the campaign to end", _campaign_done(server, first["id"]))
        assert status["state"] == "completed" and status["failures"] == 0, status
        (left_out,) = status["excluded"]
        assert left_out["device_id"] == device_id and left_out["code"] == "ota.no_boot_chain"
        assert "boot chain" in left_out["reason"]
        second = _ok(server, "campaign", "create", "--release", "1.0.0", "--waves", "100%",
                     "--max-failure-rate", "5%")  # fmt: skip
        assert second["state"] == "completed"
        assert [(e["device_id"], e["code"]) for e in second["excluded"]] == [
            (device_id, "campaign.excluded.no_boot_chain")
        ]
        attest = server.cli("attest", "run", device_id)
        assert attest.returncode == 4 and "Traceback" not in attest.stderr
        (line,) = [line for line in attest.stderr.splitlines() if line.strip()]
        assert "no attestation key" in line and "no TPM" in line
        text = server.cli("campaign", "create", "--release", "1.0.0", "--waves", "100%",
                          "--max-failure-rate", "5%")  # fmt: skip
        assert "left out" in text.stdout and device_id in text.stdout
        assert (
            json.loads(server.cli("campaign", "status", first["id"], "--json").stdout)["excluded"]
            == status["excluded"]
        )
