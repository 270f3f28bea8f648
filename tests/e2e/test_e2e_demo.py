"""`trustfleet demo` end to end: the main job works and reports every stage (issue: Foundation II).

Real everything: SoftHSM2 tokens, the HTTPS service, Mosquitto, ingest, agents with keys in
their tokens. Four devices keep it short (the demo needs four roles); `make demo` runs ten.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

STAGES = ["init", "release", "provision", "serve", "enroll", "telemetry", "reenroll",
          "update", "rollback", "attest", "quarantine", "heal", "revoke"]  # fmt: skip


def test_demo_runs_every_stage_and_cleans_up(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "trustfleet"
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [str(cli), "demo", "--devices", "4", "--workdir", str(workdir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    stages = {s["name"]: s for s in doc["stages"]}
    assert [s["name"] for s in doc["stages"]] == STAGES, proc.stderr[-2000:]
    failed = {n: s["details"] for n, s in stages.items() if not s["ok"]}
    assert not failed, failed
    assert proc.returncode == 0
    update = stages["update"]["details"]
    assert update["state"] == "completed" and update["committed"] == update["devices"]
    assert update["by_delta"] >= 1
    rollback = stages["rollback"]["details"]
    assert rollback["device_state"] == "rolled_back" and rollback["boot_slot"] == "a"
    attest = stages["attest"]["details"]
    assert attest["passed"] == attest["devices"]
    quarantine = stages["quarantine"]["details"]
    assert "attestation.measurement.unknown" in quarantine["findings"]
    assert quarantine["telemetry_blocked"]
    heal = stages["heal"]["details"]
    assert heal["update"] == "committed" and heal["attestation"] == "pass"
    assert heal["quarantine_lifted"] and heal["telemetry_again"]
    revoke = stages["revoke"]["details"]
    assert revoke["ocsp"] == "REVOKED"
    assert revoke["reconnect_refused"] and revoke["victim_silent_after"]
    assert revoke["others_keep_publishing"]
    for stage in doc["stages"]:
        assert set(stage) == {"name", "ok", "seconds", "details"}
    # Everything it started is stopped: no process of ours still runs in the workdir.
    leftovers = subprocess.run(
        ["pgrep", "-f", str(workdir)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []
