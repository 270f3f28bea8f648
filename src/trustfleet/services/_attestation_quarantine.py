"""Quarantine: the policy on missed challenges, and the operator's quarantine and its lifting.

The store is the quarantine's source of truth (``devices.quarantined_at``); ``server run``'s
broker side confines the device at the broker within a poll. Every change writes its security
event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.services._attestation_policy import consecutive_misses
from trustfleet.services.runtime import Runtime
from trustfleet.store import JSON, DeviceRecord, Transaction

__all__ = ["event", "lift_quarantine", "quarantine", "quarantine_in", "sweep_missed"]

_OUTCOME_WINDOW: Final = 100


def event(
    tx: Transaction, kind: str, device_id: str, details: Mapping[str, JSON], now: datetime
) -> None:
    """Append a ``system`` security event about a device."""
    tx.events.append(
        type=kind,
        actor="system",
        subject=f"device:{device_id}",
        details=details,
        now=now,
    )


def quarantine_in(
    tx: Transaction, device: DeviceRecord, *, reason: str, actor: str, now: datetime
) -> None:
    """Quarantine a device in the caller's transaction, with its ``device.quarantined`` event."""
    last = tx.attestation.last_passed(device.id)
    release = (last.release if last else None) or device.firmware_version
    tx.attestation.set_quarantine(device.id, at=now, reason=reason, by=actor, release=release)
    tx.events.append(
        type="device.quarantined",
        actor=actor,
        subject=f"device:{device.id}",
        details={"reason": reason[:256], "release": release},
        now=now,
    )


# -- missed challenges, operator ---------------------------------------------------------------


def sweep_missed(rt: Runtime, *, now: datetime) -> list[str]:
    """Close unanswered challenges past their timeout as missed; quarantine repeat offenders.

    A device that missed ``[attestation] max_missed`` challenges in a row is quarantined.
    Challenges and verdicts older than ``retention_days`` are deleted.

    Returns:
        The devices quarantined by this sweep.
    """
    settings = rt.settings.attestation
    quarantined: list[str] = []
    with rt.uow.begin() as tx:
        missed = tx.attestation.miss_expired(now=now)
        for challenge in missed:
            event(tx, "attestation.missed", challenge.device_id, {"challenge": challenge.id}, now)
        for device_id in sorted({c.device_id for c in missed}):
            outcomes = tx.attestation.recent_outcomes(device_id, limit=_OUTCOME_WINDOW)
            misses = consecutive_misses(outcomes)
            if misses >= settings.max_missed and tx.attestation.quarantine(device_id) is None:
                device = tx.devices.require(device_id)
                reason = f"{misses} attestation challenges missed in a row"
                quarantine_in(tx, device, reason=reason, actor="system", now=now)
                quarantined.append(device_id)
        cutoff = now - timedelta(days=settings.retention_days)
        tx.attestation.delete_challenges_before(cutoff)
        tx.attestation.delete_results_before(cutoff)
    return quarantined


def quarantine(rt: Runtime, device_id: str, *, reason: str, actor: str, now: datetime) -> None:
    """Quarantine a device (operator or monitoring); the broker follows within a poll.

    Raises:
        NotFound: No such device.
        Conflict: It is already quarantined.
        InvalidInput: The reason is empty or over 256 characters.
    """
    if not reason or len(reason) > 256:
        raise InvalidInput("the reason must be 1 to 256 characters", code="attestation.reason")
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        if tx.attestation.quarantine(device_id) is not None:
            raise Conflict(
                f"device '{device_id}' is already quarantined", code="attestation.quarantined"
            )
        quarantine_in(tx, device, reason=reason, actor=actor, now=now)


def lift_quarantine(rt: Runtime, device_id: str, *, actor: str, now: datetime) -> None:
    """Lift a device's quarantine.

    Raises:
        NotFound: No such device.
        Conflict: It is not quarantined.
    """
    with rt.uow.begin() as tx:
        current = tx.attestation.quarantine(device_id)
        if current is None:
            raise Conflict(
                f"device '{device_id}' is not quarantined", code="attestation.not_quarantined"
            )
        tx.attestation.clear_quarantine(device_id, now=now)
        tx.events.append(
            type="device.released",
            actor=actor,
            subject=f"device:{device_id}",
            details={"by": actor, "quarantined_since": current.at.isoformat()},
            now=now,
        )
