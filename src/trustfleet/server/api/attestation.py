"""``/devices/{id}/attestation…``: verdicts, quarantine and lift, re-attestation on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from trustfleet.server.api._auth import CallerDep, guarded
from trustfleet.server.api._device_lists import DeviceId, device_list_route
from trustfleet.server.api._pagination import ItemsPage
from trustfleet.server.api.schemas import AttestationOut, ChallengeOut, QuarantineOut, ReasonIn
from trustfleet.services.attestation import (
    challenge_message,
    issue_challenge,
    lift_quarantine,
    quarantine,
)
from trustfleet.services.inventory import attestation_history
from trustfleet.services.runtime import Runtime
from trustfleet.store import AttestationResultRecord

__all__ = ["router"]

router = APIRouter(tags=["attestation"])


def _present(rec: AttestationResultRecord) -> AttestationOut:
    return AttestationOut(
        challenge_id=rec.challenge_id, verified_at=rec.verified_at, ok=rec.ok,
        release=rec.release, reset_count=rec.reset_count, restart_count=rec.restart_count,
        clock=rec.clock, findings=[dict(f) for f in rec.findings],
    )  # fmt: skip


device_list_route(
    router, "attestation", response_model=ItemsPage[AttestationOut],
    service=attestation_history, present=_present, permission="attestation.read",
    doc="A device's attestation verdicts with their findings, newest first.",
)  # fmt: skip


@router.post(
    "/devices/{device_id}/quarantine",
    response_model=QuarantineOut,
    **guarded("devices.quarantine"),
)
async def post_quarantine(caller: CallerDep, device_id: DeviceId, body: ReasonIn) -> Any:
    """Quarantine a device: its broker access shrinks to its ota/ and attest/ topics."""
    await caller.run(
        quarantine, caller.rt, device_id, reason=body.reason, actor=caller.principal.actor,
        now=caller.clock(),
    )  # fmt: skip
    return QuarantineOut(device_id=device_id, quarantined=True, reason=body.reason)


@router.post(
    "/devices/{device_id}/lift", response_model=QuarantineOut, **guarded("devices.quarantine")
)
async def post_lift(caller: CallerDep, device_id: DeviceId) -> Any:
    """Lift a device's quarantine (its broker access is whole again)."""
    await caller.run(
        lift_quarantine, caller.rt, device_id, actor=caller.principal.actor, now=caller.clock()
    )
    return QuarantineOut(device_id=device_id, quarantined=False, reason=None)


def _challenge(rt: Runtime, device_id: str, *, now: Any) -> str:
    """Store a challenge and publish it to the device, as ``trustfleet attest run`` does."""
    from trustfleet.server import publish_challenge  # noqa: PLC0415  # loads the MQTT client

    challenge = issue_challenge(rt, device_id=device_id, now=now, trigger="operator")
    _topic, payload = challenge_message(device_id, challenge)
    publish_challenge(rt.settings, device_id, payload)
    return challenge.id


@router.post(
    "/devices/{device_id}/attest",
    response_model=ChallengeOut,
    status_code=202,
    **guarded("devices.attest"),
)
async def post_attest(caller: CallerDep, device_id: DeviceId) -> Any:
    """Challenge a device now; its verdict shows in its attestation history."""
    challenge_id = await caller.run(_challenge, caller.rt, device_id, now=caller.clock())
    return ChallengeOut(device_id=device_id, challenge_id=challenge_id)
