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
    "CAMPAIGN_DEVICE_STATES",
    "CAMPAIGN_STATES",
    "CERTIFICATE_KINDS",
    "CERTIFICATE_STATUSES",
    "CHALLENGE_OUTCOMES",
    "CHALLENGE_TRIGGERS",
    "DEVICE_PROTOCOLS",
    "DEVICE_STATES",
    "JSON",
    "AkEnrollmentRecord",
    "AttestationKeyRecord",
    "AttestationResultRecord",
    "AuditCheckpointRecord",
    "CampaignDeviceRecord",
    "CampaignDeviceState",
    "CampaignRecord",
    "CampaignState",
    "CertificateKind",
    "CertificateRecord",
    "CertificateStatus",
    "ChallengeOutcome",
    "ChallengeRecord",
    "ChallengeTrigger",
    "CrlRecord",
    "DeviceRecord",
    "DeviceState",
    "QuarantineRecord",
    "ReleaseRecord",
    "SecurityEventRecord",
    "TelemetryFields",
    "TelemetryRecord",
]

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value as Python builds it (``json.loads`` output, or lists/tuples and mappings)."""

DeviceState = Literal["manufactured", "enrolled", "revoked", "decommissioned"]
CertificateKind = Literal["ca", "server", "idevid", "ldevid"]
CertificateStatus = Literal["valid", "revoked"]

DEVICE_PROTOCOLS: Final[tuple[str, ...]] = ("mqtt", "lwm2m")
"""How a device talks to the service: MQTT over TLS, or LwM2M over CoAP and DTLS."""
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
        protocol: ``mqtt`` or ``lwm2m`` (how the device talks to the service).
    """

    id: str
    model: str
    state: DeviceState
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None
    firmware_version: str | None = None
    protocol: str = "mqtt"


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
class AuditCheckpointRecord:
    """One signed checkpoint of the audit log.

    Attributes:
        size: How many entries the tree held.
        root: Its root hash (32 bytes).
        note: The C2SP signed note, with the log's signature (cosignatures are kept apart).
        signed_at: When it was signed (UTC).
    """

    size: int
    root: bytes
    note: bytes
    signed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityEventRecord:
    """One entry of the append-only security event log.

    Attributes:
        id: Position in the log: dense, starting at 1, in commit order.
        occurred_at: When the event happened (UTC).
        type: Stable dotted name such as ``"certificate.revoked"``.
        actor: Who caused it, e.g. ``"operator:alice@ops1"``, ``"device:<id>"``, ``"system"``.
        subject: What it is about, e.g. ``"device:<id>"``.
        details: Event-specific JSON object.
        origin: From where, e.g. ``"cli host=ops1 pid=42"``, ``"est 10.0.0.7"``.
        outcome: ``"ok"`` for a change that took effect, ``"refused"`` for a refused request.
    """

    id: int
    occurred_at: datetime
    type: str
    actor: str
    subject: str
    details: Mapping[str, JSON]
    origin: str
    outcome: str


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
class TelemetryFields:
    """The fields of one telemetry message, as the service received it.

    Attributes:
        device_id: The device that sent it.
        received_at: When the service received it (UTC, the service's clock).
        device_ts: The device's ``ts`` (UTC), if it sent a valid one.
        seq: The device's per-boot counter, if it sent one.
        metrics: The ``metrics`` object (name to number).
        boot: The device's per-boot id, if it sent one (``(device_id, boot, seq)`` is unique).
    """

    device_id: str
    received_at: datetime
    device_ts: datetime | None
    seq: int | None
    metrics: Mapping[str, JSON]
    boot: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryRecord(TelemetryFields):
    """One telemetry message as stored: its :class:`TelemetryFields` and its row number.

    Attributes:
        id: Store-assigned row number.
    """

    id: int


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


CampaignState = Literal["running", "paused", "aborted", "halted", "completed"]
CampaignDeviceState = Literal[
    "pending", "notified", "checking", "downloading", "installing", "rebooting",
    "committed", "up_to_date", "failed", "rolled_back", "refused", "timed_out",
]  # fmt: skip
CAMPAIGN_STATES: Final[tuple[CampaignState, ...]] = (
    "running", "paused", "aborted", "halted", "completed",
)  # fmt: skip
CAMPAIGN_DEVICE_STATES: Final[tuple[CampaignDeviceState, ...]] = (
    "pending", "notified", "checking", "downloading", "installing", "rebooting",
    "committed", "up_to_date", "failed", "rolled_back", "refused", "timed_out",
)  # fmt: skip
"""The same values as ``trustfleet.ota.campaign_rules`` (the store imports no domain package)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignRecord:
    """An update campaign as stored.

    Attributes:
        id: Random, non-guessable identifier.
        model: The hardware model it updates.
        version: The release it rolls out.
        waves: Cumulative percentages of the devices to update, the last 100.
        max_failure_rate: Failure rate (fraction) above which the campaign halts.
        device_timeout_s: How long a notified device has to finish.
        state: ``running``, ``paused``, ``aborted``, ``halted`` or ``completed``.
        current_wave: The wave being rolled out (1-based).
        reason: Why it halted, completed or was aborted, if it was.
        created_at: When it was created (UTC).
        updated_at: When it last changed (UTC).
    """

    id: str
    model: str
    version: str
    waves: tuple[float, ...]
    max_failure_rate: float
    device_timeout_s: int
    state: CampaignState
    current_wave: int
    reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignDeviceRecord:
    """One device of a campaign, as stored.

    Attributes:
        campaign_id: The campaign.
        device_id: The device.
        wave: Its wave (1-based; 0: already up to date when the campaign was created).
        state: Where its update is (the last state it reported, or the service's).
        bytes: Bytes downloaded, as last reported.
        total: Bytes to download, as last reported.
        delta: Whether it downloads a delta, as last reported.
        reason: Why it failed, as reported (or the service's reason for ``timed_out``).
        code: The device's error code, if any.
        notified_at: When the ``update`` command was sent (UTC), if it was.
        updated_at: When the row last changed (UTC).
    """

    campaign_id: str
    device_id: str
    wave: int
    state: CampaignDeviceState
    bytes: int | None
    total: int | None
    delta: bool | None
    reason: str | None
    code: str | None
    notified_at: datetime | None
    updated_at: datetime


ChallengeTrigger = Literal["boot", "schedule", "operator"]
ChallengeOutcome = Literal["passed", "failed", "missed"]
CHALLENGE_TRIGGERS: Final[tuple[ChallengeTrigger, ...]] = ("boot", "schedule", "operator")
CHALLENGE_OUTCOMES: Final[tuple[ChallengeOutcome, ...]] = ("passed", "failed", "missed")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationKeyRecord:
    """A device's attestation key, bound to its TPM by credential activation.

    Attributes:
        device_id: The device.
        ak_public: The AK's marshalled ``TPM2B_PUBLIC``.
        ak_public_pem: The AK public key (SPKI PEM): verifies quote signatures.
        ak_name: The AK's TPM name, lowercase hex.
        ek_public: The EK's marshalled ``TPM2B_PUBLIC``.
        ek_certificate: The EK certificate (DER) that was checked.
        activated_at: When the device proved the AK lives with the EK (UTC).
    """

    device_id: str
    ak_public: bytes
    ak_public_pem: str
    ak_name: str
    ek_public: bytes
    ek_certificate: bytes
    activated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AkEnrollmentRecord:
    """A pending AK enrollment: the credential was sent, the secret not yet returned.

    Attributes:
        id: Random enrollment id.
        device_id: The device.
        secret_sha256: SHA-256 of the credential secret, hex (the secret is never stored).
        ak_public: The AK's marshalled ``TPM2B_PUBLIC``.
        ak_public_pem: The AK public key (SPKI PEM).
        ak_name: The AK's TPM name, lowercase hex.
        ek_public: The EK's marshalled ``TPM2B_PUBLIC``.
        ek_certificate: The EK certificate (DER).
        created_at: When the credential was made (UTC).
        expires_at: Until when the secret may be returned (UTC).
        used_at: When the secret was returned (UTC), if it was.
    """

    id: str
    device_id: str
    secret_sha256: str
    ak_public: bytes
    ak_public_pem: str
    ak_name: str
    ek_public: bytes
    ek_certificate: bytes
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeRecord:
    """An attestation challenge (nonce) sent to a device.

    Attributes:
        id: Random challenge id (echoed in the evidence).
        device_id: The device.
        nonce: The random bytes the quote must carry.
        pcrs: The PCRs to quote.
        trigger: ``boot``, ``schedule`` or ``operator``.
        issued_at: When it was issued (UTC).
        expires_at: Past this it counts as missed if unanswered (UTC).
        used_at: When evidence for it was accepted for verification (UTC), if it was.
        outcome: ``passed``, ``failed``, ``missed``, or None while open.
    """

    id: str
    device_id: str
    nonce: bytes
    pcrs: tuple[int, ...]
    trigger: ChallengeTrigger
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    outcome: ChallengeOutcome | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationResultRecord:
    """One stored verdict.

    Attributes:
        id: Store-assigned row number.
        device_id: The device.
        challenge_id: The challenge the evidence answered.
        verified_at: When it was verified (UTC).
        ok: Whether it passed.
        findings: The findings (``code``, ``severity``, ``message``, ``context``).
        release: The release whose image was measured, if known.
        reset_count: The quote's resetCount.
        restart_count: The quote's restartCount.
        clock: The quote's clock (ms).
    """

    id: int
    device_id: str
    challenge_id: str
    verified_at: datetime
    ok: bool
    findings: tuple[Mapping[str, JSON], ...]
    release: str | None
    reset_count: int | None
    restart_count: int | None
    clock: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineRecord:
    """A device's quarantine.

    Attributes:
        device_id: The device.
        at: Since when (UTC).
        reason: Why.
        by: Who imposed it (``system`` or ``operator:…``).
        release: The release the device was running when it was quarantined, if known.
    """

    device_id: str
    at: datetime
    reason: str
    by: str
    release: str | None
