"""The demo's trust stages: attestation, quarantine of a tampered device, healing, revocation."""

from __future__ import annotations

from trustfleet.services.revocation import revoke_device
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.process import wait_until
from trustfleet.sim.scenarios._common import (
    AGENT_TIMEOUT_S,
    ATTEST_WAIT_S,
    CUT_OFF_TIMEOUT_S,
    IMAGE_BYTES,
    V3,
    publish,
    run_campaign,
    wait_silent,
    within,
)
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["attest", "heal", "quarantine", "revoke"]

_GLITCH = {"boot": "skip_verify"}
"""What a voltage glitch does to a real bootloader: the failed check is skipped."""
_TAMPER_BYTES = 4096
_SILENT_ROWS = 3
"""A device is silent when it adds no row while every other adds this many."""


@stage("attest")
def attest(fleet: SimFleet) -> Observed:
    """Every running device answers a TPM challenge; every verdict passes."""
    live = fleet.running()
    verdicts = fleet.attest(live, wait_s=ATTEST_WAIT_S)
    passed = [d for d, v in verdicts.items() if v.get("ok")]
    return Observed(
        {"every verdict passed": len(passed) == len(live)},
        {
            "devices": len(live),
            "passed": len(passed),
            "releases": sorted({str(v.get("release")) for v in verdicts.values()}),
            "failed": {d: v for d, v in verdicts.items() if not v.get("ok")},
        },
    )


@stage("quarantine")
def quarantine(fleet: SimFleet) -> Observed:
    """A tampered image that boots (glitch) is measured, refused and quarantined."""
    agent = fleet.agent("tamper")
    victim = agent.device_id
    agent.tamper_active_image(offset=IMAGE_BYTES // 2, length=_TAMPER_BYTES)
    agent.set_faults(_GLITCH)
    started = utc_now()
    agent.restart()  # reboot: the boot chain measures the tampered image
    record = wait_until(
        lambda: fleet.quarantine_of(victim), timeout_s=AGENT_TIMEOUT_S, what="the quarantine"
    )
    codes = fleet.last_findings(victim)
    others = fleet.running(but=[victim])
    blocked = wait_silent(
        fleet, victim, others=others, rows=_SILENT_ROWS, timeout_s=AGENT_TIMEOUT_S
    )
    return Observed(
        {
            "the verdict finds an unknown measurement": "attestation.measurement.unknown" in codes,
            "its telemetry is blocked while the others flow": blocked,
        },
        {
            "device": victim,
            "tamper_to_quarantine_s": round((record.at - started).total_seconds(), 2),
            "findings": codes,
            "reason": record.reason,
            "telemetry_blocked": blocked,
        },
    )


@stage("heal")
def heal(fleet: SimFleet) -> Observed:
    """A good release heals the tampered device: it attests again and is let out."""
    victim = fleet.device("tamper")
    released = publish(fleet, V3)
    status = run_campaign(fleet, [victim], waves=[100.0], version=V3)
    row = next((r for r in status.devices if r.device_id == victim), None)
    verdict = fleet.attest([victim], wait_s=ATTEST_WAIT_S)[victim]
    lifted = within(
        lambda: wait_until(
            lambda: fleet.quarantine_of(victim) is None,
            timeout_s=AGENT_TIMEOUT_S,
            what="the quarantine to be lifted",
        )
    )
    since = fleet.telemetry_counts()
    flowing = within(
        lambda: fleet.wait_telemetry([victim], rows=2, since=since, timeout_s=AGENT_TIMEOUT_S)
    )
    return Observed(
        {
            "the update committed": row is not None and row.state == "committed",
            "the verdict passes": bool(verdict.get("ok")),
            "the quarantine is lifted": lifted,
            "its telemetry flows again": flowing,
        },
        {
            "device": victim,
            "release": released["version"],
            "update": row.state if row else None,
            "by_delta": row.delta if row else None,
            "attestation": "pass" if verdict.get("ok") else verdict,
            "quarantine_lifted": lifted,
            "telemetry_again": flowing,
        },
    )


@stage("revoke")
def revoke(fleet: SimFleet) -> Observed:
    """A revoked device is cut off at once, refused on reconnect, and revoked in OCSP and CRL."""
    agent = fleet.agent("revoked")
    victim = agent.device_id
    cert = agent.ldevid()
    revoked_at = utc_now()
    revoke_device(
        fleet.srv.runtime, victim, reason="keyCompromise", actor="operator:demo", now=revoked_at
    )
    others = fleet.running(but=[victim])
    silent = wait_silent(fleet, victim, others=others, rows=_SILENT_ROWS, timeout_s=AGENT_TIMEOUT_S)
    last = fleet.last_telemetry_at(victim)
    cut_off_s = max(0.0, (last - revoked_at).total_seconds()) if last else 0.0
    refused = agent.run_once().returncode != 0
    ocsp_status = fleet.ocsp_status(cert)
    in_crl = fleet.crl_lists(cert.serial_number)
    return Observed(
        {
            f"cut off within {CUT_OFF_TIMEOUT_S:.0f} s": silent and cut_off_s <= CUT_OFF_TIMEOUT_S,
            "a reconnect is refused": refused,
            "OCSP says revoked": ocsp_status == "REVOKED",
            "the CRL lists it": in_crl,
        },
        {
            "device": victim,
            "cut_off_seconds": round(cut_off_s, 2),
            "victim_silent_after": silent,
            "others_keep_publishing": bool(others),  # wait_silent raises if they stop
            "reconnect_refused": refused,
            "ocsp": ocsp_status,
            "in_crl": in_crl,
        },
    )
