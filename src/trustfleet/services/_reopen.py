"""The operator's re-open of an enrolled device's enrollment (``trustfleet device reopen``).

A device that lost its LDevID (reflashed, token replaced) may enroll once more with its
IDevID: a ``device.reopened`` security event allows it, the next issuance uses it up, and it
lapses after ``[pki] reopen_validity_hours``. services/enrollment.py checks it at each
issuance (:func:`open_reopen`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from trustfleet.errors import Conflict, InvalidInput
from trustfleet.services._enroll_rules import ReopenGrant
from trustfleet.services.runtime import Runtime
from trustfleet.store import Transaction

__all__ = ["Reopened", "open_reopen", "reopen_enrollment"]

logger = logging.getLogger(__name__)

_MAX_REASON_CHARS = 256
_REOPEN_AND_ISSUANCE = ("device.reopened", "device.enrolled", "device.reenrolled")


@dataclass(frozen=True)
class Reopened:
    """An open re-open of a device's enrollment.

    Attributes:
        device_id: The device.
        event_id: The ``device.reopened`` event that opened it.
        expires_at: When it lapses if no enrollment used it.
        already_open: It was open before this call (no new event was written).
    """

    device_id: str
    event_id: int
    expires_at: datetime
    already_open: bool


def reopen_enrollment(
    rt: Runtime, device_id: str, *, actor: str, reason: str | None, now: datetime
) -> Reopened:
    """Allow an enrolled device exactly one more enrollment with its IDevID (``simpleenroll``).

    For a device that lost its LDevID (reflashed, token replaced). The re-open is a
    ``device.reopened`` security event; the next issuance to the device (by either EST
    operation) uses it up, and it lapses after ``[pki] reopen_validity_hours``. Calling it
    again while one is open changes nothing.

    Raises:
        NotFound: No such device.
        InvalidInput: The reason is over 256 characters.
        Conflict: The device is not enrolled (a manufactured one may enroll as it is; a
            revoked or decommissioned one never again).
    """
    if reason is not None and len(reason) > _MAX_REASON_CHARS:
        raise InvalidInput(
            f"the reason is longer than {_MAX_REASON_CHARS} characters",
            code="enrollment.reopen.reason",
        )
    with rt.uow.begin() as tx:
        device = tx.devices.require(device_id)
        if device.state != "enrolled":
            hint = (
                "a manufactured device may enroll with its IDevID as it is"
                if device.state == "manufactured"
                else "a revoked device stays revoked: provision a new identity"
            )
            raise Conflict(
                f"device '{device_id}' is {device.state}: only an enrolled device is re-opened",
                hint=hint,
                code="enrollment.reopen.state",
            )
        grant = open_reopen(rt, tx, device_id, now=now)
        if grant is not None:
            return Reopened(device_id, grant.event_id, grant.expires_at, already_open=True)
        expires_at = now + timedelta(hours=rt.settings.pki.reopen_validity_hours)
        event = tx.events.append(
            type="device.reopened",
            actor=actor,
            subject=f"device:{device_id}",
            details={"expires_at": expires_at.isoformat(), "reason": reason or ""},
            now=now,
        )
    logger.info("enrollment of %s re-opened until %s", device_id, expires_at.isoformat())
    return Reopened(device_id, event.id, expires_at, already_open=False)


def open_reopen(
    rt: Runtime, tx: Transaction, device_id: str, *, now: datetime
) -> ReopenGrant | None:
    """The device's re-open if the newest of its re-opens and issuances is an unexpired re-open."""
    last = tx.events.last_about(f"device:{device_id}", types=_REOPEN_AND_ISSUANCE)
    if last is None or last.type != "device.reopened":
        return None
    # The end the operator was told (kept in the event), else the configured window.
    expires_at = last.occurred_at + timedelta(hours=rt.settings.pki.reopen_validity_hours)
    recorded = last.details.get("expires_at")
    if isinstance(recorded, str):
        try:
            expires_at = min(expires_at, datetime.fromisoformat(recorded))
        except ValueError:
            logger.warning("device.reopened event %d has a malformed expires_at", last.id)
    return ReopenGrant(event_id=last.id, expires_at=expires_at) if now < expires_at else None
