"""The management API's resources as pydantic models (its OpenAPI schema), apart from records.

Each ``*Out`` model is what a route answers; each ``*In`` model is a request body (unknown
fields refused). Presenting a store record as a model is the routers' job.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from trustfleet.rbac import Role

__all__ = [
    "AttestationOut",
    "CampaignDeviceOut",
    "CampaignIn",
    "CampaignOut",
    "CampaignStatusOut",
    "CertificateOut",
    "ChallengeOut",
    "CheckpointOut",
    "CommandIn",
    "CommandOut",
    "CsrIn",
    "DecommissionIn",
    "DecommissionOut",
    "DeviceOut",
    "EventOut",
    "IdevidOut",
    "MeOut",
    "OperatorCreatedOut",
    "OperatorIn",
    "OperatorOut",
    "ProofOut",
    "QuarantineOut",
    "ReasonIn",
    "ReleaseIn",
    "ReleaseOut",
    "RevokeIn",
    "Rfc3339",
    "RoleIn",
    "TelemetryOut",
    "TokenCreatedOut",
    "TokenIn",
    "TokenOut",
    "WaveOut",
]

_TEXT = 200
_ID = 64
VERSION_PATTERN = r"^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}$"
MODEL_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
LOGIN_PATTERN = r"^[a-z][a-z0-9._-]{0,63}$"
NAME_PATTERN = r"^[!-~]([ -~]{0,62}[!-~])?$"
"""A token's name: printable ASCII, no space at either end."""
OperatorRole = Literal[
    "admin", "security-officer", "release-manager", "fleet-operator", "factory", "auditor"
]  # fmt: skip
"""``rbac.OPERATOR_ROLES`` (a test checks they agree)."""
DeviceState = Literal["manufactured", "enrolled", "revoked", "decommissioned"]
"""``store.DEVICE_STATES`` (a test checks they agree)."""


_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]")


def _rfc3339_text(value: object) -> object:
    """Times are RFC 3339 text, not a number of seconds (which pydantic would otherwise take)."""
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError("expected an RFC 3339 date-time with a zone")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
"""A time with its zone, as RFC 3339 text (``2026-12-02T18:00:00Z``)."""
RevocationReason = Literal[
    "unspecified", "keyCompromise", "caCompromise", "affiliationChanged", "superseded",
    "cessationOfOperation", "privilegeWithdrawn",
]  # fmt: skip


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeOut(BaseModel):
    """The caller."""

    login: str
    role: str
    via: Literal["session", "token"]
    token_id: str | None
    actor: str
    permissions: list[str]


class DeviceOut(BaseModel):
    """A device of the inventory."""

    id: str
    model: str
    state: str
    firmware_version: str | None
    slot: str | None
    last_seen_at: datetime | None
    online: bool
    cert_not_after: datetime | None
    attestation_ok: bool | None
    attested_at: datetime | None
    quarantined: bool
    created_at: datetime
    updated_at: datetime


class CertificateOut(BaseModel):
    """A certificate a CA issued."""

    issuer: str
    serial: str
    kind: str
    subject: str
    status: str
    not_before: datetime
    not_after: datetime
    sha256: str
    revoked_at: datetime | None
    revocation_reason: str | None
    pem: str


class TelemetryOut(BaseModel):
    """One telemetry message as received."""

    id: int
    received_at: datetime
    device_ts: datetime | None
    seq: int | None
    boot: str | None
    metrics: dict[str, Any]


class EventOut(BaseModel):
    """One security event (an entry of the audit log)."""

    id: int
    occurred_at: datetime
    type: str
    actor: str
    subject: str
    outcome: str
    origin: str
    details: dict[str, Any]


class AttestationOut(BaseModel):
    """One attestation verdict with its findings."""

    challenge_id: str
    verified_at: datetime
    ok: bool
    release: str | None
    reset_count: int | None
    restart_count: int | None
    clock: int | None
    findings: list[dict[str, Any]]


class QuarantineOut(BaseModel):
    """A device's quarantine after a change."""

    device_id: str
    quarantined: bool
    reason: str | None


class ChallengeOut(BaseModel):
    """A challenge sent to a device; its verdict shows in ``/devices/{id}/attestation``."""

    device_id: str
    challenge_id: str


class CommandIn(_In):
    """A command to send to a device."""

    name: Literal["ping", "report"]
    args: dict[str, Any] = Field(default_factory=dict, max_length=16)


class CommandOut(BaseModel):
    """A command sent to a device and, once answered, its result."""

    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    actor: str
    state: str
    sent_at: datetime
    ok: bool | None
    result: dict[str, Any] | None
    answered_at: datetime | None


class RevokeIn(_In):
    """Why a device is revoked (an RFC 5280 reason name)."""

    reason: RevocationReason = "unspecified"


class ReasonIn(_In):
    """Why (recorded in the event log)."""

    reason: str = Field(min_length=1, max_length=_TEXT)


class ReleaseIn(_In):
    """A staged build to publish."""

    model: str = Field(pattern=MODEL_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)


class ReleaseOut(BaseModel):
    """A published release."""

    model: str
    version: str
    min_version: str
    image_length: int
    targets_version: int
    published_at: datetime


class CampaignIn(_In):
    """A campaign to create: every enrolled device of ``model``, or the listed ``devices``."""

    version: str = Field(pattern=VERSION_PATTERN)
    model: str | None = Field(default=None, pattern=MODEL_PATTERN)
    devices: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    waves: list[float] = Field(
        min_length=1, max_length=20, description="Cumulative percentages ending at 100."
    )
    max_failure_rate: float = Field(ge=0.0, le=1.0, description="Halt above it (a fraction).")
    device_timeout_s: int | None = Field(default=None, ge=1, le=30 * 86400)


class CampaignOut(BaseModel):
    """A campaign."""

    id: str
    model: str
    version: str
    waves: list[float]
    max_failure_rate: float
    device_timeout_s: int
    state: str
    current_wave: int
    reason: str | None
    created_at: datetime
    updated_at: datetime


class WaveOut(BaseModel):
    """One wave's progress: devices by state."""

    wave: int
    devices: int
    states: dict[str, int]


class CampaignStatusOut(BaseModel):
    """A campaign with its waves' progress and totals by device state."""

    campaign: CampaignOut
    waves: list[WaveOut]
    totals: dict[str, int]


class CampaignDeviceOut(BaseModel):
    """One device of a campaign."""

    device_id: str
    wave: int
    state: str
    bytes: int | None
    total: int | None
    delta: bool | None
    reason: str | None
    code: str | None
    notified_at: datetime | None
    updated_at: datetime


class CheckpointOut(BaseModel):
    """The audit log's latest signed checkpoint (a C2SP signed note)."""

    size: int
    note: str


class ProofOut(BaseModel):
    """An entry's inclusion proof in the latest checkpoint (C2SP tlog-proof text)."""

    entry_id: int
    proof: str


class CsrIn(_In):
    """A device's CSR to sign as its IDevID."""

    model: str = Field(pattern=MODEL_PATTERN)
    csr_pem: str = Field(min_length=1, max_length=16384)


class IdevidOut(BaseModel):
    """The signed IDevID of a registered device."""

    device_id: str
    certificate_pem: str


class OperatorIn(_In):
    """An operator to add; without a password a one-time one is generated."""

    login: str = Field(pattern=LOGIN_PATTERN)
    role: OperatorRole
    password: str | None = Field(default=None, min_length=12, max_length=256)


class OperatorOut(BaseModel):
    """An operator account."""

    login: str
    role: str
    must_change_password: bool
    totp_enabled: bool
    passkeys: int
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


class OperatorCreatedOut(BaseModel):
    """A new operator and, when generated, its one-time password (shown only now)."""

    operator: OperatorOut
    one_time_password: str | None


class RoleIn(_In):
    """A new role."""

    role: OperatorRole


class TokenIn(_In):
    """An API token to create for oneself."""

    name: str = Field(pattern=NAME_PATTERN)
    role: Role | None = None
    ttl_s: int = Field(default=30 * 86400, ge=60, le=366 * 86400)


class TokenOut(BaseModel):
    """An API token (never its secret)."""

    id: str
    owner: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreatedOut(BaseModel):
    """A new token and its secret (shown only now)."""

    token: TokenOut
    secret: str


class DecommissionIn(_In):
    """How to decommission: ask the device to wipe itself (default), or, with ``offline``,
    retire a device known to be gone at once (unverified)."""

    offline: bool = False


class DecommissionOut(BaseModel):
    """A device's decommission: ``pending`` (waiting for wipe evidence), ``verified`` or
    ``unverified`` (flagged: no proof of the wipe)."""

    device_id: str
    state: Literal["pending", "verified", "unverified"]
    flagged: bool
    requested_by: str
    requested_at: datetime
    deadline: datetime
    completed_at: datetime | None
    reason: str | None
