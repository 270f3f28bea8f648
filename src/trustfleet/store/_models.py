"""SQLAlchemy ORM rows. Private: nothing outside :mod:`trustfleet.store` sees these.

The schema itself is owned by the Alembic migrations in ``migrations/versions``; these models
must describe the same tables (a test compares them with the migrated database).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from trustfleet.store._ddl import one_of
from trustfleet.store._types import EventId, UTCDateTime
from trustfleet.store.records import (
    CAMPAIGN_DEVICE_STATES,
    CAMPAIGN_STATES,
    CERTIFICATE_KINDS,
    CERTIFICATE_STATUSES,
    CHALLENGE_OUTCOMES,
    CHALLENGE_TRIGGERS,
    DEVICE_STATES,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _check_one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    """A CHECK that ``column`` holds one of ``values``, named after the column."""
    return CheckConstraint(one_of(column, values), name=column)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so constraint names are stable."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DeviceRow(Base):
    """Table ``devices``."""

    __tablename__ = "devices"
    __table_args__ = (
        _check_one_of("state", DEVICE_STATES),
        Index(None, "state"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    firmware_version: Mapped[str | None] = mapped_column(String(32))
    quarantined_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    quarantine_reason: Mapped[str | None] = mapped_column(String(256))
    quarantined_by: Mapped[str | None] = mapped_column(String(128))
    quarantine_release: Mapped[str | None] = mapped_column(String(32))
    protocol: Mapped[str] = mapped_column(String(8), server_default="mqtt")


class CertificateRow(Base):
    """Table ``certificates``."""

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("issuer", "serial"),
        UniqueConstraint("sha256"),
        _check_one_of("kind", CERTIFICATE_KINDS),
        _check_one_of("status", CERTIFICATE_STATUSES),
        Index(None, "device_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    device_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("devices.id"))
    subject: Mapped[str] = mapped_column(String(1024))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    sha256: Mapped[str] = mapped_column(String(64))
    der: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SecurityEventRow(Base):
    """Table ``security_events`` (append-only; triggers refuse UPDATE and DELETE)."""

    __tablename__ = "security_events"
    __table_args__ = (Index(None, "type"), Index(None, "subject"))

    id: Mapped[int] = mapped_column(EventId(), primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    origin: Mapped[str] = mapped_column(String(256), server_default="")
    outcome: Mapped[str] = mapped_column(String(16), server_default="ok")


class AuditTileRow(Base):
    """Table ``audit_tiles``: the hash tiles of the audit log's Merkle tree (C2SP tlog-tiles).

    One row per tile (level, index); ``hashes`` is its content, 32 bytes per hash. The right-most
    tile of each level grows as entries are integrated; every other tile is full and final.
    """

    __tablename__ = "audit_tiles"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class AuditCheckpointRow(Base):
    """Table ``audit_checkpoints`` (append-only): each signed checkpoint of the audit log."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditCosignatureRow(Base):
    """Table ``audit_cosignatures``: witnesses' cosignatures of checkpoints (C2SP)."""

    __tablename__ = "audit_cosignatures"

    size: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("audit_checkpoints.size"), primary_key=True, autoincrement=False
    )
    witness: Mapped[str] = mapped_column(String(256), primary_key=True)
    line: Mapped[str] = mapped_column(String(512))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrlRow(Base):
    """Table ``crls``: the current CRL of each issuer."""

    __tablename__ = "crls"

    issuer: Mapped[str] = mapped_column(String(64), primary_key=True)
    crl_number: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)


class TelemetryRow(Base):
    """Table ``telemetry``: one row per accepted telemetry message (bounded by retention)."""

    __tablename__ = "telemetry"
    __table_args__ = (
        Index(None, "received_at"),
        Index(None, "device_id", "received_at"),
        # A QoS 1 redelivery is not a second row; rows without a boot id (old agents) are
        # never equal here (NULLs are distinct), so they are not deduplicated.
        Index("uq_telemetry_device_id_boot_seq", "device_id", "boot", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(EventId(), primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    device_ts: Mapped[datetime | None] = mapped_column(UTCDateTime())
    seq: Mapped[int | None] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    boot: Mapped[str | None] = mapped_column(String(32))


class ReleaseRow(Base):
    """A published firmware release (one per model and version)."""

    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("model", "version"),
        Index("ix_releases_model_version_key", "model", "version_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    version_key: Mapped[str] = mapped_column(String(32))
    min_version: Mapped[str] = mapped_column(String(32))
    image_sha256: Mapped[str] = mapped_column(String(64))
    image_length: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[bytes] = mapped_column(LargeBinary)
    targets_version: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignRow(Base):
    """Table ``campaigns``: one update campaign (waves, threshold, where it is)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        _check_one_of("state", CAMPAIGN_STATES),
        Index(None, "state"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    waves: Mapped[list[float]] = mapped_column(JSON)
    max_failure_rate: Mapped[float] = mapped_column(Float)
    device_timeout_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    current_wave: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignDeviceRow(Base):
    """Table ``campaign_devices``: each target device of a campaign and its update state."""

    __tablename__ = "campaign_devices"
    __table_args__ = (
        _check_one_of("state", CAMPAIGN_DEVICE_STATES),
        Index(None, "campaign_id", "wave", "state"),
        Index(None, "device_id"),
    )

    campaign_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("campaigns.id"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    delta: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(256))
    code: Mapped[str | None] = mapped_column(String(256))
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AttestationKeyRow(Base):
    """Table ``attestation_keys``: the AK bound to each device's TPM (credential activation)."""

    __tablename__ = "attestation_keys"

    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"), primary_key=True)
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ak_public_pem: Mapped[str] = mapped_column(String(1024))
    ak_name: Mapped[str] = mapped_column(String(160))
    ek_public: Mapped[bytes] = mapped_column(LargeBinary)
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AkEnrollmentRow(Base):
    """Table ``ak_enrollments``: a MakeCredential challenge waiting for ActivateCredential."""

    __tablename__ = "ak_enrollments"
    __table_args__ = (Index(None, "device_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    ak_public: Mapped[bytes] = mapped_column(LargeBinary)
    ak_public_pem: Mapped[str] = mapped_column(String(1024))
    ak_name: Mapped[str] = mapped_column(String(160))
    ek_public: Mapped[bytes] = mapped_column(LargeBinary)
    ek_certificate: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AttestationChallengeRow(Base):
    """Table ``attestation_challenges``: nonces sent to devices (single use)."""

    __tablename__ = "attestation_challenges"
    __table_args__ = (
        _check_one_of("trigger", CHALLENGE_TRIGGERS),
        _check_one_of("outcome", CHALLENGE_OUTCOMES),
        Index(None, "device_id", "issued_at"),
        Index(None, "outcome", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    pcrs: Mapped[list[int]] = mapped_column(JSON)
    trigger: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))


class AttestationResultRow(Base):
    """Table ``attestation_results``: every verdict, with its findings (history)."""

    __tablename__ = "attestation_results"
    __table_args__ = (Index(None, "device_id", "verified_at"),)

    id: Mapped[int] = mapped_column(EventId(), primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), ForeignKey("devices.id"))
    challenge_id: Mapped[str] = mapped_column(String(40))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ok: Mapped[bool] = mapped_column(Boolean)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    release: Mapped[str | None] = mapped_column(String(32))
    reset_count: Mapped[int | None] = mapped_column(BigInteger)
    restart_count: Mapped[int | None] = mapped_column(BigInteger)
    clock: Mapped[int | None] = mapped_column(BigInteger)


# The operator plane's and monitoring's rows live in their own modules; importing them puts
# them in Base.metadata wherever the models are used (migrations, the models-match-schema test).
from trustfleet.store import (  # noqa: E402, F401
    _lifecycle_models,
    _monitor_models,
    _operator_models,
)
