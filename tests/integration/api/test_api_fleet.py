"""Each resource of the management API on a real server: inventory and history, commands,
revocation and quarantine, events and the audit log, factory CSRs. Every change is attributed
to the token's principal with the request's origin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apikit import API, ApiKit, assert_problem
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import load_der_x509_csr

from conftest import Fleet
from support.server import make_csr_der, make_key, new_device_id
from trustfleet.monitoring import Finding
from trustfleet.services.alerts import record_findings

pytestmark = pytest.mark.integration


def test_the_inventory_filters_and_shows_one_device(api: ApiKit, fleet: Fleet) -> None:
    enrolled = api.get("/devices", state="enrolled").json()["items"]
    assert [d["id"] for d in enrolled] == list(fleet.enrolled)
    assert all(d["cert_not_after"] and not d["quarantined"] for d in enrolled)
    assert [d["id"] for d in api.get("/devices", search="new-").json()["items"]] == list(
        fleet.registered
    )
    assert api.get("/devices", quarantined=True).json()["items"] == []
    assert api.get("/devices", attestation="none", state="manufactured").json()["items"]
    device = api.get(f"/devices/{fleet.enrolled[0]}", role="factory").json()
    assert device["id"] == fleet.enrolled[0] and device["state"] == "enrolled"
    assert_problem(api.get(f"/devices/{fleet.enrolled[0]}x"), 404, "store.device.not_found")


def test_a_devices_certificates_events_and_enrollments(api: ApiKit, fleet: Fleet) -> None:
    device_id = fleet.enrolled[0]
    certs = api.get(f"/devices/{device_id}/certificates").json()["items"]
    assert {c["kind"] for c in certs} == {"idevid", "ldevid"}
    assert all(c["pem"].startswith("-----BEGIN CERTIFICATE-----") for c in certs)
    events = api.get(f"/devices/{device_id}/events").json()["items"]
    assert {"device.registered", "device.enrolled"} <= {e["type"] for e in events}
    enrollments = api.get("/enrollments", device_id=device_id).json()["items"]
    assert [e["type"] for e in enrollments] == ["device.enrolled"]
    assert api.get(f"/devices/{device_id}/telemetry").json() == {"items": [], "next_cursor": None}
    assert api.get(f"/devices/{device_id}/attestation").json()["items"] == []
    assert_problem(api.get("/devices/nope-nope/certificates"), 404, "store.device.not_found")
    assert_problem(api.get("/devices/NOPE!/certificates"), 400, "api.invalid")


def test_commands_are_sent_and_listed(api: ApiKit, fleet: Fleet) -> None:
    device_id = fleet.enrolled[1]
    sent = api.post(f"/devices/{device_id}/commands", {"name": "ping"}, role="fleet-operator")
    assert sent.status_code == 202, sent.text
    command = sent.json()
    assert command["state"] == "sent" and command["actor"].startswith("operator:op-fleet-operator")
    assert api.get(f"/commands/{command['id']}").json()["id"] == command["id"]
    listed = api.get(f"/devices/{device_id}/commands").json()["items"]
    assert [c["id"] for c in listed] == [command["id"]]
    bad = api.post(f"/devices/{device_id}/commands", {"name": "reboot"}, role="fleet-operator")
    assert_problem(bad, 400, "api.invalid")
    not_enrolled = api.post(f"/devices/{fleet.registered[0]}/commands", {"name": "ping"})
    assert_problem(not_enrolled, 409, "command.not_enrolled")


def test_quarantine_lift_and_revoke_are_attributed(api: ApiKit, fleet: Fleet) -> None:
    device_id = fleet.enrolled[2]
    before = api.last_event_id()
    path = f"/devices/{device_id}/quarantine"
    done = api.post(path, {"reason": "suspicious"}, role="security-officer")
    assert done.json() == {"device_id": device_id, "quarantined": True, "reason": "suspicious"}
    assert api.get("/devices", quarantined=True).json()["items"][0]["id"] == device_id
    (event,) = api.events(after_id=before, type_="device.quarantined")
    assert event.actor.startswith("operator:op-security-officer token:")
    assert event.origin.startswith(f"https POST {API}{path} from 127.0.0.1:")
    assert api.post(f"/devices/{device_id}/lift", role="security-officer").status_code == 200
    revoked = api.post(f"/devices/{device_id}/revoke", {"reason": "keyCompromise"})
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    (event,) = api.events(after_id=before, type_="device.revoked")
    assert event.actor.startswith("operator:op-admin token:")
    again = api.post(f"/devices/{device_id}/revoke", {"reason": "keyCompromise"})
    assert_problem(again, 409, "conflict")
    refused = api.events(after_id=before, type_="operator.refused")
    assert [e.subject for e in refused] == [f"command:https POST {API}/devices/{device_id}/revoke"]


def test_reattest_without_an_attestation_key_is_refused(api: ApiKit, fleet: Fleet) -> None:
    response = api.post(f"/devices/{fleet.enrolled[0]}/attest", role="security-officer")
    assert response.status_code in (404, 409), response.text
    assert response.json()["code"].startswith("attestation.")


def test_events_filter_and_sort(api: ApiKit, fleet: Fleet) -> None:
    newest = api.get("/events", type="device.", limit=5, role="auditor").json()["items"]
    assert [e["id"] for e in newest] == sorted((e["id"] for e in newest), reverse=True)
    assert all(e["type"].startswith("device.") for e in newest)
    oldest = api.get("/events", sort="id", limit=2, role="auditor").json()
    assert oldest["items"][0]["id"] < oldest["items"][1]["id"] and oldest["next_cursor"]
    subject = f"device:{fleet.enrolled[0]}"
    only = api.get("/events", subject=subject, role="auditor").json()["items"]
    assert only and {e["subject"] for e in only} == {subject}
    assert_problem(api.get("/events", role="factory"), 403, "auth.forbidden")


def test_audit_checkpoint_and_proof(api: ApiKit, fleet: Fleet) -> None:
    api.server.cli("audit", "checkpoint", "--now")
    checkpoint = api.get("/audit/checkpoint", role="auditor").json()
    assert checkpoint["size"] >= 1 and checkpoint["note"].splitlines()[1] == str(checkpoint["size"])
    proof = api.get("/audit/entries/1/proof", role="auditor").json()
    assert proof["entry_id"] == 1 and proof["proof"]
    too_far = api.get(f"/audit/entries/{checkpoint['size'] + 10**6}/proof", role="auditor")
    assert_problem(too_far, 404, "not_found")
    assert_problem(api.get("/audit/checkpoint", role="fleet-operator"), 403, "auth.forbidden")


def test_factory_signs_a_csr(api: ApiKit, tmp_path: Path) -> None:
    device_id = new_device_id("fab")
    key = make_key(tmp_path / "k.pem")
    pem = load_der_x509_csr(make_csr_der(key, cn=device_id)).public_bytes(Encoding.PEM).decode()
    made = api.post("/factory/csr", {"model": "sim-v1", "csr_pem": pem}, role="factory")
    assert made.status_code == 201, made.text
    assert made.json()["device_id"] == device_id
    assert made.json()["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
    again = api.post("/factory/csr", {"model": "sim-v1", "csr_pem": pem}, role="factory")
    assert_problem(again, 409, "conflict")
    junk = api.post("/factory/csr", {"model": "sim-v1", "csr_pem": "junk"}, role="factory")
    assert_problem(junk, 400, "invalid_input")


# -- /alerts: lists and filters, lifecycle, approvals that really act, problems --------------


def _raise_alert(
    api: ApiKit, device_id: str, kind: str, severity: str = "critical"
) -> tuple[int, int]:
    now = datetime.now(UTC)
    found = Finding(
        device_id=device_id, kind=kind, severity=severity, detector="model", at=now,
        summary=f"{kind} on {device_id}", evidence={"features": ["all-bytes-out"]},
    )  # fmt: skip
    (change,) = record_findings(api.server.runtime, [found], now=now)
    return change.alert_id, change.actions[-1]


def test_list_get_and_lifecycle(api: ApiKit, fleet: Fleet) -> None:
    device = fleet.enrolled[0]
    alert_id, _ = _raise_alert(api, device, "monitor.api.listed")
    _raise_alert(api, device, "monitor.api.other", severity="low")
    page = api.get("/alerts", role="auditor", device_id=device, severity="critical").json()
    assert alert_id in [a["id"] for a in page["items"]]
    assert {a["severity"] for a in page["items"]} == {"critical"}
    one = api.get(f"/alerts/{alert_id}", role="fleet-operator").json()
    assert one["kind"] == "monitor.api.listed" and one["evidence"]["features"] == ["all-bytes-out"]
    assert [(a["action"], a["state"]) for a in one["actions"]] == [
        ("notify", "done"), ("quarantine", "pending"),
    ]  # fmt: skip
    acked = api.post(f"/alerts/{alert_id}/ack", role="security-officer").json()
    assert acked["state"] == "acknowledged" and acked["updated_by"].startswith("operator:")
    assert_problem(api.post(f"/alerts/{alert_id}/ack"), 409, "alert.state")
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    quiet = api.post(f"/alerts/{alert_id}/suppress", {"until": until}).json()
    assert quiet["state"] == "suppressed"
    too_far = (datetime.now(UTC) + timedelta(days=40)).isoformat()
    assert_problem(
        api.post(f"/alerts/{alert_id}/suppress", {"until": too_far}), 400, "alert.suppress.until"
    )
    assert api.post(f"/alerts/{alert_id}/resolve").json()["state"] == "resolved"
    assert_problem(api.get("/alerts/987654321"), 404, "alert.not_found")
    assert_problem(api.post("/alerts/actions/987654321/approve"), 404, "alert.action.not_found")


def test_approval_really_quarantines(api: ApiKit, fleet: Fleet) -> None:
    device = fleet.registered[0]
    _, action_id = _raise_alert(api, device, "monitor.api.approve")
    done = api.post(f"/alerts/actions/{action_id}/approve", role="security-officer").json()
    assert done["state"] == "done" and done["result"] == "quarantined"
    with api.server.runtime.uow.begin(read_only=True) as tx:
        quarantine = tx.attestation.quarantine(device)
    assert quarantine is not None and quarantine.by.startswith("operator:")
    assert_problem(api.post(f"/alerts/actions/{action_id}/reject"), 409, "alert.action.state")


def test_a_rekey_is_sent_as_a_reenroll_command(api: ApiKit, fleet: Fleet) -> None:
    device_id = fleet.enrolled[0]
    before = api.last_event_id()
    sent = api.post(f"/devices/{device_id}/rekey", role="security-officer")
    assert sent.status_code == 202, sent.text
    command = sent.json()
    assert (command["name"], command["args"], command["state"]) == (
        "reenroll",
        {"rekey": True},
        "sent",
    )
    (event,) = api.events(after_id=before, type_="device.rekey.requested")
    assert event.subject == f"device:{device_id}" and event.details["command"] == command["id"]
    assert event.actor.startswith("operator:op-security-officer")
    denied = api.post(f"/devices/{device_id}/rekey", role="fleet-operator")
    assert denied.status_code == 403, denied.text
    not_enrolled = api.post(f"/devices/{fleet.registered[0]}/rekey")
    assert_problem(not_enrolled, 409, "command.not_enrolled")
    assert_problem(api.post("/devices/nope-nope/rekey"), 404, "store.device.not_found")
