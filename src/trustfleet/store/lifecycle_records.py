"""Records of the lifecycle tables (``tx.cas``, ``tx.decommissions``, ``tx.expiry_notices``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

__all__ = [
    "CA_KIND_VALUES",
    "CA_STATE_VALUES",
    "DECOMMISSION_STATE_VALUES",
    "EXPIRY_LEVEL_VALUES",
    "CaKind",
    "CaRecord",
    "CaState",
    "DecommissionRecord",
    "DecommissionState",
    "ExpiryLevel",
    "ExpiryNoticeRecord",
]

CaKind = Literal["root", "manufacturing", "device"]
CA_KIND_VALUES: Final[tuple[CaKind, ...]] = ("root", "manufacturing", "device")
CaState = Literal["active", "standby", "retiring", "retired"]
CA_STATE_VALUES: Final[tuple[CaState, ...]] = ("active", "standby", "retiring", "retired")
DecommissionState = Literal["pending", "verified", "unverified"]
DECOMMISSION_STATE_VALUES: Final[tuple[DecommissionState, ...]] = (
    "pending",
    "verified",
    "unverified",
)
ExpiryLevel = Literal["warning", "critical", "expired"]
EXPIRY_LEVEL_VALUES: Final[tuple[ExpiryLevel, ...]] = ("warning", "critical", "expired")


@dataclass(frozen=True, slots=True, kw_only=True)
class CaRecord:
    """A CA of the home, by the name its certificates and CRLs use as ``issuer``.

    Attributes:
        name: ``root``, ``manufacturing``, ``device`` or a later generation (``device-2``…).
        kind: ``root``, ``manufacturing`` or ``device``.
        state: ``active`` issues and is trusted; ``standby`` is trusted but does not issue yet;
            ``retiring`` is trusted but issues no more; ``retired`` has its final CRL and is no
            longer trusted.
        created_at: When it was registered.
        activated_at: When it started issuing (None: never yet).
        retired_at: When it was retired (None: not retired).
    """

    name: str
    kind: CaKind
    state: CaState
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DecommissionRecord:
    """A device asked to wipe itself, and the outcome.

    Attributes:
        device_id: The device.
        state: ``pending`` (waiting for evidence), ``verified`` (evidence checked) or
            ``unverified`` (no valid evidence by the deadline, or the device was offline).
        nonce: The server's fresh nonce the evidence must carry (hex).
        requested_by: Who asked (an operator's login or ``system``).
        requested_at: When.
        deadline: When a pending request becomes ``unverified``.
        evidence: The device's signed wipe evidence as received (verified or not), or None.
        reason: Why it is unverified (or a note), or None.
        completed_at: When it became verified or unverified.
    """

    device_id: str
    state: DecommissionState
    nonce: str
    requested_by: str
    requested_at: datetime
    deadline: datetime
    evidence: Mapping[str, Any] | None
    reason: str | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiryNoticeRecord:
    """The last expiry warning raised for one subject (e.g. ``cert:device:1a2b``, ``tuf:root``).

    Attributes:
        subject: What expires.
        not_after: When it expires.
        level: ``warning``, ``critical`` or ``expired``.
        raised_at: When this level was raised.
    """

    subject: str
    not_after: datetime
    level: ExpiryLevel
    raised_at: datetime
