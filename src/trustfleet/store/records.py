"""Domain values returned by the store's repositories.

These frozen dataclasses are the only shape in which stored data leaves :mod:`trustfleet.store`;
ORM rows never do. Every datetime in a record is timezone-aware and in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, TypeAlias

__all__ = [
    "CERTIFICATE_KINDS",
    "CERTIFICATE_STATUSES",
    "DEVICE_STATES",
    "JSON",
    "CertificateKind",
    "CertificateRecord",
    "CertificateStatus",
    "CrlRecord",
    "DeviceRecord",
    "DeviceState",
    "ReleaseRecord",
    "SecurityEventRecord",
    "TelemetryRecord",
]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value as Python builds it (``json.loads`` output, or lists/tuples and mappings)."""

DeviceState = Literal["manufactured", "enrolled", "revoked", "decommissioned"]
CertificateKind = Literal["ca", "server", "idevid", "ldevid"]
CertificateStatus = Literal["valid", "revoked"]

DEVICE_STATES: Final[tuple[DeviceState, ...]] = (
    "manufactured",
    "enrolled",
    "revoked",
    "decommissioned",
)
CERTIFICATE_KINDS: Final[tuple[CertificateKind, ...]] = ("ca", "server", "idevid", "ldevid")
CERTIFICATE_STATUSES: Final[tuple[CertificateStatus, ...]] = ("valid", "revoked")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceRecord:
    """A device as stored.

    Attributes:
        id: The device identifier (at most 64 characters).
        model: The hardware model name.
        state: Where the device is in its life.
        created_at: When the device was registered (UTC).
        updated_at: When the record last changed (UTC).
        last_seen_at: When the service last received an MQTT message from it (UTC), if ever.
        firmware_version: The release the device last reported committed, if any.
    """

    id: str
    model: str
    state: DeviceState
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None
    firmware_version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRecord:
    """A certificate as stored.

    Attributes:
        id: Store-assigned row number.
        issuer: Name of the issuing CA, e.g. ``"root"``, ``"manufacturing"``, ``"device"``.
        serial: Serial number as lowercase hex without leading zeros.
        kind: ``ca``, ``server``, ``idevid`` or ``ldevid``.
        device_id: The device the certificate belongs to, if any.
        subject: The subject distinguished name (RFC 4514 string).
        not_before: Start of validity (UTC).
        not_after: End of validity (UTC).
        sha256: SHA-256 fingerprint of the DER encoding, lowercase hex.
        der: The DER-encoded certificate.
        status: ``valid`` or ``revoked``.
        revoked_at: When it was revoked (UTC), if it was.
        revocation_reason: Why it was revoked, if it was.
        created_at: When the record was stored (UTC).
    """

    id: int
    issuer: str
    serial: str
    kind: CertificateKind
    device_id: str | None
    subject: str
    not_before: datetime
    not_after: datetime
    sha256: str
    der: bytes
    status: CertificateStatus
    revoked_at: datetime | None
    revocation_reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityEventRecord:
    """One entry of the append-only security event log.

    Attributes:
        id: Position in the log: dense, starting at 1, in commit order.
        occurred_at: When the event happened (UTC).
        type: Stable dotted name such as ``"certificate.revoked"``.
        actor: Who caused it, e.g. ``"operator:cli"``, ``"device:<id>"``, ``"system"``.
        subject: What it is about, e.g. ``"device:<id>"``.
        details: Event-specific JSON object.
    """

    id: int
    occurred_at: datetime
    type: str
    actor: str
    subject: str
    details: Mapping[str, JSON]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrlRecord:
    """The current CRL of one issuer.

    Attributes:
        issuer: Name of the issuing CA.
        crl_number: The CRL number (strictly increasing per issuer).
        this_update: The CRL's thisUpdate (UTC).
        next_update: The CRL's nextUpdate (UTC).
        der: The DER-encoded CRL.
    """

    issuer: str
    crl_number: int
    this_update: datetime
    next_update: datetime
    der: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryRecord:
    """One telemetry message as stored.

    Attributes:
        id: Store-assigned row number.
        device_id: The device that sent it.
        received_at: When the service received it (UTC, the service's clock).
        device_ts: The device's ``ts`` (UTC), if it sent a valid one.
        seq: The device's per-boot counter, if it sent one.
        metrics: The ``metrics`` object (name to number).
    """

    id: int
    device_id: str
    received_at: datetime
    device_ts: datetime | None
    seq: int | None
    metrics: Mapping[str, JSON]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRecord:
    """A published firmware release.

    Attributes:
        id: Store-assigned row number.
        model: The hardware model it is for.
        version: Its version (``MAJOR.MINOR.PATCH``).
        min_version: The lowest installed version it may be installed over.
        image_sha256: SHA-256 of the full image (hex).
        image_length: Length of the full image in bytes.
        manifest: The canonical manifest bytes (the TUF target ``<model>/<version>/release.json``).
        targets_version: The TUF targets metadata version that published it.
        published_at: When it was published (UTC).
    """

    id: int
    model: str
    version: str
    min_version: str
    image_sha256: str
    image_length: int
    manifest: bytes
    targets_version: int
    published_at: datetime
