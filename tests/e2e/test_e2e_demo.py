"""`trustfleet demo` end to end on the fleet harness; the fleet's REAL state is checked after.

Real everything: SoftHSM2 tokens, the HTTPS service, Mosquitto, ingest, agents with keys in
their tokens. Four devices keep it short (the demo needs four roles); `make demo` runs ten.
The demo runs with ``--keep``; the test then reads the store through the home, asks the OCSP
responder and the CRL with openssl and curl, checks the broker's own CRL file with openssl, and
stops every process the demo left by its pid.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support.server import curl, openssl, run_cli
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings
from trustfleet.sim.process import stop_pid_group
from trustfleet.sim.scenarios import LWM2M_MODEL
from trustfleet.store.alert_records import AlertQuery

pytestmark = pytest.mark.e2e

STAGES = ["init", "release", "provision", "serve", "enroll", "telemetry", "reenroll",
          "update", "rollback", "attest", "quarantine", "heal", "revoke", "lwm2m", "audit",
          "detect", "console", "decommission"]  # fmt: skip
V1, V2, V3 = "1.0.0", "1.1.0", "1.2.0"


def _leftovers(workdir: Path) -> list[int]:
    """Processes still running with the workdir on their command line (ours only)."""
    found = subprocess.run(
        ["pgrep", "-f", str(workdir)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(p) for p in found if int(p) != os.getpid()]


def _stop_all(doc: dict[str, Any] | None, workdir: Path) -> None:
    """Stop what the kept demo left: its process groups, by the pids it reported."""
    procs = (doc or {}).get("processes") or {}
    groups = [procs.get("server"), procs.get("witness"), *(procs.get("agents") or {}).values()]
    for pid in (p for p in groups if p):
        stop_pid_group(int(pid))
    for pid in _leftovers(workdir):  # the report was lost: the groups of what still runs
        try:
            stop_pid_group(os.getpgid(pid))
        except ProcessLookupError:
            continue


@contextmanager
def _kept_demo(workdir: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], Any]]:
    cli = Path(sys.executable).parent / "trustfleet"
    doc: dict[str, Any] | None = None
    try:
        proc = subprocess.run(
            [str(cli), "demo", "--devices", "4", "--workdir", str(workdir), "--keep", "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        doc = json.loads(proc.stdout)
        yield proc, doc
    finally:
        _stop_all(doc, workdir)


def _store_facts(home: Path) -> dict[str, Any]:
    """What the store says about the fleet (read through the home, not the demo's output)."""
    rt = Runtime.open(load_server_settings(home))
    try:
        with rt.uow.begin(read_only=True) as tx:
            every = tx.devices.list(limit=100)
            devices = [d for d in every if d.protocol == "mqtt"]  # the lwm2m stage's: below
            ids = [d.id for d in devices]
            return {
                "lwm2m_states": sorted(d.state for d in every if d.protocol == "lwm2m"),
                "states": {d.id: d.state for d in devices},
                "firmware": {d.id: d.firmware_version for d in devices},
                "telemetry": {d: tx.telemetry.count(device_id=d) for d in ids},
                "quarantined": [d for d in ids if tx.attestation.quarantine(d) is not None],
                "alerts": {
                    d: [a.kind for a in tx.alerts.page(AlertQuery(device_id=d))] for d in ids
                },
                "metrics": tx.monitor_metrics.counts(source="device"),
                "campaigns": sorted(
                    c.state for c in tx.campaigns.list(limit=10) if c.model != LWM2M_MODEL
                ),
                "lwm2m_campaigns": sorted(
                    c.state for c in tx.campaigns.list(limit=10) if c.model == LWM2M_MODEL
                ),
                "events": [(e.type, e.subject) for e in tx.events.list(limit=1000)],
                "decommissions": {r.device_id: r.state for r in tx.decommissions.list()},
                "revocation_reasons": {
                    d: sorted(
                        {c.revocation_reason or "" for c in tx.certificates.list_for_device(d)}
                    )
                    for d in ids
                },
                "last_verdicts": {
                    d: [r.ok for r in tx.attestation.results(d, limit=1)] for d in ids
                },
            }
    finally:
        rt.close()


def _ocsp_says(home: Path, ldevid: Path, url: str, work: Path) -> str:
    """The responder's answer for ``ldevid``: request by openssl, POST by curl, read by openssl."""
    request, response = work / "ocsp.req", work / "ocsp.der"
    issuer = home / "public" / "device-ca.pem"
    openssl("ocsp", "-issuer", issuer, "-cert", ldevid, "-reqout", request, "-no_nonce")
    sent = curl("--cacert", home / "public" / "ca-bundle.pem", "-H",
                "content-type: application/ocsp-request", "--data-binary", f"@{request}",
                "-o", response, f"{url}/ocsp")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    text = openssl("ocsp", "-respin", response, "-issuer", issuer, "-cert", ldevid,
                   "-CAfile", home / "public" / "ca-bundle.pem")  # fmt: skip
    return text.decode()


def _check_fleet(facts: dict[str, Any], devices: Path, *, exfiltrated: str) -> str:
    """The store's fleet is what the demo's stages should have left; the revoked device's id."""
    states = facts["states"]
    (revoked,) = [d for d, s in states.items() if s == "revoked"]
    assert sorted(states.values()) == ["decommissioned", "enrolled", "enrolled", "revoked"]
    # The fleet updated (completed), the unhealthy device halted its campaign, the healing
    # release completed.
    assert facts["campaigns"] == ["completed", "completed", "halted"]
    # The lwm2m stage's constrained device took its firmware campaign and was revoked.
    assert facts["lwm2m_campaigns"] == ["completed"]
    assert facts["lwm2m_states"] == ["revoked"]
    firmware = facts["firmware"]
    (healed,) = [d for d, v in firmware.items() if v == V3]
    (rolled_back,) = [d for d, v in firmware.items() if v in (None, V1)]
    assert sorted(v for d, v in firmware.items() if d not in (healed, rolled_back)) == [V2, V2]
    # The tampered device was quarantined, then released after it healed; the exfiltrating one
    # (detect) is quarantined now, by the monitor's playbook, with an alert of its own.
    assert ("device.quarantined", f"device:{healed}") in facts["events"]
    assert ("device.released", f"device:{healed}") in facts["events"]
    assert facts["quarantined"] == [exfiltrated]
    assert any(
        k.startswith(("monitor.destination.", "monitor.volume."))
        for k in facts["alerts"][exfiltrated]
    )
    reporting = [d for d, s in states.items() if s == "enrolled" and d != exfiltrated]
    assert all(facts["metrics"].get(d, 0) >= 2 for d in reporting), facts["metrics"]
    assert facts["metrics"].get(exfiltrated, 0) >= 1  # quarantined after its first window(s)
    assert facts["last_verdicts"][healed] == [True]
    assert ("device.revoked", f"device:{revoked}") in facts["events"]
    assert all(n >= 3 for n in facts["telemetry"].values()), facts["telemetry"]
    boot_env = json.loads((devices / rolled_back / "bootenv.json").read_text(encoding="utf-8"))
    assert boot_env["boot_slot"] == "a"
    return str(revoked)


def _check_revoked(home: Path, ldevid: Path, work: Path) -> None:
    """OCSP, the published CRL and the broker's loaded CRL all revoke ``ldevid``."""
    url = f"https://localhost:{load_server_settings(home).api.port}"
    bundle = home / "public" / "ca-bundle.pem"
    assert ": revoked" in _ocsp_says(home, ldevid, url, work)
    crl = work / "device.crl"
    got = curl("--cacert", bundle, "-o", crl, f"{url}/crl/device.crl")
    assert got.returncode == 0, got.stderr
    serial = openssl("x509", "-in", ldevid, "-noout", "-serial").decode().split("=")[1].strip()
    listed = openssl("crl", "-inform", "DER", "-in", crl, "-noout", "-text").decode()
    assert f"Serial Number: {serial}" in listed
    # The broker refuses it: the CRL Mosquitto loaded revokes it.
    loaded = home / "broker" / "device-ca.crl.pem"
    verdict = subprocess.run(
        ["openssl", "verify", "-crl_check", "-CRLfile", loaded, "-CAfile", bundle, ldevid],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verdict.returncode != 0 and "revoked" in verdict.stdout + verdict.stderr


def _check_audit(details: dict[str, Any], home: Path, witness: Path, *, revoked: str) -> None:
    """The audit stage's figures agree with the home: the revocation's entry, the witness's
    cosignature on the published checkpoint, the whole log verifying (the demo's home was not
    the one it tampered with), and the edit it made named in its copy."""
    rt = Runtime.open(load_server_settings(home))
    try:
        with rt.uow.begin(read_only=True) as tx:
            (entry,) = [  # the MQTT device's (the lwm2m stage revokes its own device too)
                e
                for e in tx.events.list(type="device.revoked", limit=10)
                if e.subject == f"device:{revoked}"
            ]
    finally:
        rt.close()
    assert entry.subject == f"device:{revoked}" and details["revocation_entry"] == entry.id
    assert details["checkpoint_size"] >= details["entries"] >= entry.id
    assert details["proof_hashes"] >= 1
    wanted = "verified" if shutil.which("go") else "Go verifier skipped"  # only where Go is absent
    assert str(details["go_verifier"]).startswith(wanted), details["go_verifier"]
    assert details["whole_log"] == "verifies"
    assert details["tampered_copy"] == [f"entries edited in the database: {entry.id}"]
    # Independently of the demo: the published checkpoint carries the witness's cosignature.
    log_vkey = (home / "public" / "audit-log.vkey").read_text().strip()
    witness_vkey = (witness / "public" / "witness.vkey").read_text().strip()
    assert details["cosigned_by"] == witness_vkey.split("+", 1)[0]
    verified = run_cli("audit", "verify", "--home", home, "--json",
                       "--witness", witness_vkey, "--min-witnesses", "1")  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["checkpoint"]["size"] >= entry.id
    assert any(log_vkey.split("+", 1)[0] in line for line in report["checks"])


def _check_decommissioned(facts: dict[str, Any], devices: Path, retired: str) -> None:
    """The decommission stage left a verified wipe: the store, the events and the folder."""
    assert facts["states"][retired] == "decommissioned"
    assert facts["decommissions"] == {retired: "verified"}
    # Every certificate is revoked: cessationOfOperation, or superseded by an earlier renewal.
    assert "cessationOfOperation" in facts["revocation_reasons"][retired]
    assert set(facts["revocation_reasons"][retired]) <= {"cessationOfOperation", "superseded"}
    assert ("device.decommissioned", f"device:{retired}") in facts["events"]
    marker = json.loads((devices / retired / "decommissioned.json").read_text(encoding="utf-8"))
    assert marker["evidence"]["device_id"] == retired
    assert not (devices / retired / "state.enc").exists()


def _check_console_login(login: dict[str, str], home: Path) -> None:
    """The one-time admin login ``--keep`` printed works once, and asks for TOTP enrollment."""
    from trustfleet.services.auth import login_password

    assert login["url"].endswith("/console/login")
    rt = Runtime.open(load_server_settings(home))
    try:
        step = login_password(rt, login=login["login"], password=login["password"],
                              origin="test from 127.0.0.1:1", now=datetime.now(UTC))  # fmt: skip
    finally:
        rt.close()
    assert step.view.principal.role == "admin" and step.view.stage == "mfa-enroll"


def test_demo_runs_every_stage_and_leaves_the_fleet_in_its_real_state(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    with _kept_demo(workdir) as (proc, doc):
        assert "Traceback" not in proc.stderr
        assert [s["name"] for s in doc["stages"]] == STAGES, proc.stderr[-2000:]
        failed = {s["name"]: s["details"] for s in doc["stages"] if not s["ok"]}
        assert not failed, failed
        assert proc.returncode == 0
        for stage in doc["stages"]:
            assert set(stage) == {"name", "ok", "seconds", "details"}
        # The decommissioned device's agent stopped by itself after its wipe.
        assert doc["processes"]["server"] and len(doc["processes"]["agents"]) == 3
        assert doc["processes"]["witness"]

        home = workdir / "server"
        released = next(s["details"] for s in doc["stages"] if s["name"] == "release")
        assert released["sbom_components"] > 0 and released["provenance_verified"], released
        detect = next(s["details"] for s in doc["stages"] if s["name"] == "detect")
        revoked = _check_fleet(
            _store_facts(home), workdir / "devices", exfiltrated=detect["device"]
        )
        _check_revoked(home, workdir / "devices" / revoked / "ldevid.pem", tmp_path)
        audit = next(s["details"] for s in doc["stages"] if s["name"] == "audit")
        _check_audit(audit, home, workdir / "witness", revoked=revoked)
        _check_console_login(doc["console"], home)
        retired = next(s["details"] for s in doc["stages"] if s["name"] == "decommission")
        _check_decommissioned(_store_facts(home), workdir / "devices", retired["device"])
    # Everything the demo left was stopped by its pid.
    assert _leftovers(workdir) == []
