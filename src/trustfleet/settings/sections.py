"""The sections of ``trustfleet.toml`` that say where the server listens and what it holds.

Each field's ``description`` is the comment written above it in the file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trustfleet.configfile import ConfigModel

__all__ = [
    "ApiSettings",
    "BrokerSettings",
    "CaSettings",
    "KeystoreSettings",
    "OperatorSettings",
    "PkiSettings",
    "StoreSettings",
]

_SERVICE_IDENTITY = r"[A-Za-z0-9._:-]{1,64}"
_DEVICE_ID = re.compile(r"[a-z0-9-]{8,64}")  # pki.DEVICE_ID_PATTERN; settings imports no pki
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ApiSettings(ConfigModel):
    """The HTTPS API (TLS 1.3 only): EST enrollment, CRLs and OCSP."""

    host: str = "127.0.0.1"
    """Address the API listens on."""
    port: int = Field(default=8443, ge=1, le=65535)
    public_url: str = "https://localhost:8443"
    """Base URL written into certificates (CRL distribution point, OCSP)."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes sharing the port (SO_REUSEPORT)."""
    online_window_s: float = Field(default=120.0, gt=0, le=86_400)
    """A device is online when the service heard from it this recently (agents beat every 30 s)."""
    tls_cert: str = "tls/api-chain.pem"
    """Server certificate + device CA."""
    tls_key: str = "secrets/api-tls.key"
    """The one key on disk: mode 0600."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Larger request bodies get 413."""
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    """Between requests; a stalled reader."""
    handshake_timeout_s: float = Field(default=10.0, gt=0)
    """The whole TLS handshake."""
    request_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    """A whole request (head and body)."""
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    """Open connections per worker, and per client address per worker
    (max_connections_per_source); more are closed."""
    max_connections_per_source: int = Field(default=64, ge=1, le=1_000_000)
    write_buffer_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    """Queued for a client: beyond it a response waits."""
    refusal_window_s: float = Field(default=60.0, gt=0, le=86_400)
    """Refused enrollments: per client address (or device) and reason, the first refusal_burst in
    a window are logged one by one, the rest as one event with a count."""
    refusal_burst: int = Field(default=5, ge=1, le=1000)
    refusal_max_keys: int = Field(default=1024, ge=1, le=1_000_000)
    """Tracked per worker; the rest share one."""


class BrokerSettings(ConfigModel):
    """Mosquitto, started and supervised by 'trustfleet server run', and the ingest workers.

    Mutual TLS 1.3, username = certificate CN, each device confined to ``tf/v1/d/<id>/#``
    (docs/mqtt.md).
    """

    kind: Literal["mosquitto", "rabbitmq"] = "mosquitto"
    """mosquitto: server run starts and supervises Mosquitto (one host). rabbitmq: server run
    attaches to the RabbitMQ cluster of [rabbitmq] (several hosts; ADR 0024)."""
    tls_cert: str = "tls/broker-chain.pem"
    tls_key: str = "secrets/broker-tls.key"
    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    service_identity: str = Field(default="svc.ingest", pattern=_SERVICE_IDENTITY)
    """The fleet service's own MQTT identity: certificate CN (never device-id shaped), its key
    inside the service token, and its certificate from the device CA."""
    service_key: str = (
        "pkcs11:token=tf-service;object=svc-ingest;type=private"
        "?pin-source=file:secrets/tf-service.pin"
    )
    service_cert: str = "tls/svc-ingest.pem"
    ingest_workers: int = Field(default=1, ge=0, le=64)
    """Ingest processes sharing $share/ingest/tf/v1/d/+/... (0: no ingest)."""
    ingest_batch_max: int = Field(default=100, ge=1, le=1000)
    """Messages per transaction."""
    ingest_batch_interval_s: float = Field(default=0.2, gt=0, le=60)
    """Or this long, whichever comes first."""
    max_payload_bytes: int = Field(default=16 * 1024, ge=256, le=256 * 1024)
    """Larger messages are dropped."""
    device_rate_per_s: float = Field(default=20.0, gt=0, le=100_000)
    """The broker's limit on each device's publications: a sustained rate (token bucket) and a
    burst above it; the rest is refused (MQTT 5: PUBACK 135)."""
    device_burst: int = Field(default=100, ge=1, le=1_000_000)
    telemetry_retention_days: int = Field(default=7, ge=1, le=3650)
    """Bounded telemetry: rows older than the window, then the oldest beyond telemetry_max_rows,
    are deleted every retention_interval_s."""
    telemetry_max_rows: int = Field(default=1_000_000, ge=1000, le=10_000_000_000)
    retention_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    revocation_poll_s: float = Field(default=0.5, gt=0, le=60)
    """How often server run checks the store for revocations and new CRLs."""

    @field_validator("service_identity")
    @classmethod
    def _not_a_device_id(cls, value: str) -> str:
        if _DEVICE_ID.fullmatch(value) or value == "tf_broker_admin":
            raise ValueError("must not look like a device id (use a '.', e.g. 'svc.ingest')")
        return value


class StoreSettings(ConfigModel):
    """Where the store lives."""

    url: str = "sqlite:///db/trustfleet.sqlite3"
    """SQLAlchemy URL. SQLite (WAL) by default, relative to the home; for scale-out use
    'postgresql+psycopg://user@host:5432/trustfleet'."""


class KeystoreSettings(ConfigModel):
    """The PKCS#11 module and, for SoftHSM2, its configuration file."""

    module: str = ""
    """PKCS#11 module; empty means 'find SoftHSM2'."""
    softhsm_conf: str = "tokens/softhsm2.conf"
    """SoftHSM2 configuration of this home (its token directory is tokens/store)."""


class CaSettings(ConfigModel):
    """One CA: its key as an RFC 7512 URI (with ``pin-source``) and its certificate."""

    key: str
    cert: str


class PkiSettings(ConfigModel):
    """Certificate profiles and revocation timing."""

    organization: str = "TrustFleet"
    """The organization (O) in every certificate the CAs issue."""
    ldevid_validity_days: int = Field(default=30, ge=1, le=3650)
    """Operational certificates."""
    idevid_validity_days: int = Field(default=7300, ge=1, le=36500)
    """Factory identities."""
    crl_validity_hours: int = Field(default=24, ge=1, le=24 * 365)
    """CRL nextUpdate - thisUpdate."""
    crl_refresh_margin_hours: int = Field(default=6, ge=0)
    """Reissue a CRL this long before it expires."""
    ocsp_validity_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    ocsp_max_nonce_bytes: int = Field(default=32, ge=1, le=128)
    """Longer OCSP nonces are refused."""
    reopen_validity_hours: int = Field(default=24, ge=1, le=24 * 30)
    """A 'device reopen' lapses after this long."""

    @field_validator("organization")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("must be one line without control characters")
        return value


class OperatorSettings(ConfigModel):
    """Operator accounts: password hashing (argon2id), login throttling, sessions, API tokens.

    The argon2id defaults are RFC 9106's second recommended option (t=3, 64 MiB, p=4).
    """

    argon2_time_cost: int = Field(default=3, ge=1, le=64)
    """argon2id passes over memory."""
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8, le=4 * 1024 * 1024)
    """argon2id memory per hash in KiB (64 MiB; lower only for tests)."""
    argon2_parallelism: int = Field(default=4, ge=1, le=64)
    """argon2id lanes."""
    max_failures: int = Field(default=5, ge=1, le=1000)
    """Failed logins per login name (and per client address) within failure_window_s before
    it is locked for lockout_s; while locked every attempt fails."""
    failure_window_s: int = Field(default=900, ge=1, le=86_400)
    lockout_s: int = Field(default=900, ge=1, le=86_400)
    session_idle_s: int = Field(default=900, ge=60, le=86_400)
    """A console session ends after this long without a request."""
    session_absolute_s: int = Field(default=28_800, ge=60, le=7 * 86_400)
    """A console session ends this long after the login whatever happens."""
    token_max_ttl_s: int = Field(default=90 * 86_400, ge=60, le=366 * 86_400)
    """Longest lifetime of an API token."""

    @model_validator(mode="after")
    def _enough_memory_per_lane(self) -> OperatorSettings:
        if self.argon2_memory_kib < 8 * self.argon2_parallelism:
            raise ValueError("argon2_memory_kib must be at least 8 KiB per lane (parallelism)")
        return self
