"""Settings of a server home, read from ``DIR/trustfleet.toml``.

Relative paths in the file are relative to the home directory. Nothing here runs at import:
call :func:`load_server_settings`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trustfleet.configfile import check_loaded_code, load_toml_model
from trustfleet.errors import Config
from trustfleet.fileio import check_trusted
from trustfleet.wire import DEVICE_TOPIC_ROOT, INGEST_GROUP

__all__ = [
    "CA_NAMES",
    "ApiSettings",
    "AttestationSettings",
    "BrokerSettings",
    "CaSettings",
    "CampaignSettings",
    "IngestSettings",
    "KeystoreSettings",
    "OtaSettings",
    "PkiSettings",
    "ServerSettings",
    "StoreSettings",
    "SupervisionSettings",
    "load_server_settings",
    "render_server_toml",
]

CA_NAMES = ("root", "manufacturing", "device")
CONFIG_FILE = "trustfleet.toml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Model):
    """The HTTPS API (EST, CRL, OCSP)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    public_url: str = "https://localhost:8443"
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: str = "tls/api-chain.pem"
    tls_key: str = "secrets/api-tls.key"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    handshake_timeout_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float = Field(default=20.0, gt=0, le=3600)
    max_connections: int = Field(default=1024, ge=1, le=1_000_000)
    max_connections_per_source: int = Field(default=64, ge=1, le=1_000_000)
    write_buffer_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    refusal_window_s: float = Field(default=60.0, gt=0, le=86_400)
    refusal_burst: int = Field(default=5, ge=1, le=1000)
    refusal_max_keys: int = Field(default=1024, ge=1, le=1_000_000)


_SERVICE_IDENTITY = r"[A-Za-z0-9._:-]{1,64}"
_DEVICE_ID = re.compile(r"[a-z0-9-]{8,64}")  # pki.DEVICE_ID_PATTERN; settings imports no pki


class BrokerSettings(_Model):
    """The MQTT broker (Mosquitto, supervised by ``server run``) and the ingest workers."""

    tls_cert: str = "tls/broker-chain.pem"
    tls_key: str = "secrets/broker-tls.key"
    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    service_identity: str = Field(default="svc.ingest", pattern=_SERVICE_IDENTITY)
    service_key: str = (
        "pkcs11:token=tf-service;object=svc-ingest;type=private"
        "?pin-source=file:secrets/tf-service.pin"
    )
    service_cert: str = "tls/svc-ingest.pem"
    ingest_workers: int = Field(default=1, ge=0, le=64)
    ingest_batch_max: int = Field(default=100, ge=1, le=1000)
    ingest_batch_interval_s: float = Field(default=0.2, gt=0, le=60)
    max_payload_bytes: int = Field(default=16 * 1024, ge=256, le=256 * 1024)
    device_rate_per_s: float = Field(default=20.0, gt=0, le=100_000)
    device_burst: int = Field(default=100, ge=1, le=1_000_000)
    telemetry_retention_days: int = Field(default=7, ge=1, le=3650)
    telemetry_max_rows: int = Field(default=1_000_000, ge=1000, le=10_000_000_000)
    retention_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    revocation_poll_s: float = Field(default=0.5, gt=0, le=60)

    @field_validator("service_identity")
    @classmethod
    def _not_a_device_id(cls, value: str) -> str:
        if _DEVICE_ID.fullmatch(value) or value == "tf_broker_admin":
            raise ValueError("must not look like a device id (use a '.', e.g. 'svc.ingest')")
        return value


class CampaignSettings(_Model):
    """The update campaign engine (ticked by ``server run``)."""

    tick_s: float = Field(default=1.0, gt=0, le=3600)
    device_timeout_s: int = Field(default=1800, ge=1, le=7 * 24 * 3600)
    max_notify_per_tick: int = Field(default=500, ge=1, le=100_000)


class StoreSettings(_Model):
    """Where the store lives: a SQLAlchemy URL; ``sqlite:///db/…`` is relative to the home."""

    url: str = "sqlite:///db/trustfleet.sqlite3"


class KeystoreSettings(_Model):
    """The PKCS#11 module and, for SoftHSM2, its configuration file."""

    module: str = ""
    softhsm_conf: str = "tokens/softhsm2.conf"


class CaSettings(_Model):
    """One CA: its key as an RFC 7512 URI (with ``pin-source``) and its certificate."""

    key: str
    cert: str


class PkiSettings(_Model):
    """Certificate profiles and revocation timing."""

    organization: str = "TrustFleet"
    ldevid_validity_days: int = Field(default=30, ge=1, le=3650)
    idevid_validity_days: int = Field(default=7300, ge=1, le=36500)
    crl_validity_hours: int = Field(default=24, ge=1, le=24 * 365)
    crl_refresh_margin_hours: int = Field(default=6, ge=0)
    ocsp_validity_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    ocsp_max_nonce_bytes: int = Field(default=32, ge=1, le=128)
    reopen_validity_hours: int = Field(default=24, ge=1, le=24 * 30)


class OtaSettings(_Model):
    """The TUF update repository and releases (docs/ota.md)."""

    repo_dir: str = "ota/repo"
    staging_dir: str = "ota/staging"
    root_threshold: int = Field(default=2, ge=1, le=16)
    root_keys: int = Field(default=3, ge=1, le=16)
    root_expiry_days: int = Field(default=365, ge=1, le=3650)
    targets_expiry_days: int = Field(default=90, ge=1, le=3650)
    snapshot_expiry_days: int = Field(default=7, ge=1, le=365)
    timestamp_expiry_hours: int = Field(default=24, ge=1, le=24 * 31)
    timestamp_refresh_margin_hours: int = Field(default=6, ge=0, le=24 * 30)
    timestamp_check_s: float = Field(default=60.0, gt=0, le=3600)
    lock_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    delta_from_previous: int = Field(default=3, ge=0, le=16)
    max_image_bytes: int = Field(default=1024**3, ge=1024, le=16 * 1024**3)

    @model_validator(mode="after")
    def _consistent(self) -> OtaSettings:
        if self.root_threshold > self.root_keys:
            raise ValueError("root_threshold must not exceed root_keys")
        if self.timestamp_refresh_margin_hours >= self.timestamp_expiry_hours:
            raise ValueError("timestamp_refresh_margin_hours must be below timestamp_expiry_hours")
        return self


class AttestationSettings(_Model):
    """Remote attestation: challenge schedule, bounds, quarantine policy (docs/attestation.md)."""

    enabled: bool = True
    interval_s: float = Field(default=600.0, ge=5, le=7 * 86_400)
    jitter_fraction: float = Field(default=0.1, ge=0, le=0.5)
    response_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_missed: int = Field(default=3, ge=1, le=100)
    nonce_max_age_s: float = Field(default=60.0, gt=0, le=3600)
    max_evidence_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_request_bytes: int = Field(default=16 * 1024, ge=1024, le=256 * 1024)
    enrollment_ttl_s: float = Field(default=300.0, gt=0, le=86_400)
    auto_release: bool = True
    tpm_manufacturer_cas: str = "public/tpm-manufacturer-cas.pem"
    retention_days: int = Field(default=30, ge=1, le=3650)
    poll_s: float = Field(default=1.0, gt=0, le=60)


class IngestSettings(_Model):
    """What the ingest workers accept from devices beyond the payload bound (docs/mqtt.md)."""

    ts_max_past_s: int = Field(default=7 * 86_400, ge=60, le=366 * 86_400)
    ts_max_future_s: int = Field(default=3600, ge=1, le=7 * 86_400)
    max_json_depth: int = Field(default=16, ge=2, le=64)
    rejected_event_window_s: int = Field(default=300, ge=1, le=86_400)
    rejected_max_devices: int = Field(default=10_000, ge=1, le=1_000_000)


class SupervisionSettings(_Model):
    """How ``server run`` restarts its workers and reports readiness (docs/operations.md).

    A worker that dies is restarted after a backoff that doubles per crash in the window; a
    kind of worker that dies more than ``restart_budget`` times in ``restart_window_s`` is
    *crash-looping*: the service keeps serving the rest, ``/readyz`` answers 503 naming it, a
    ``service.degraded`` security event is recorded, and it is retried every
    ``restart_backoff_max_s`` until one of its processes stays up for a whole window.
    """

    restart_backoff_s: float = Field(default=0.5, gt=0, le=60)
    restart_backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    restart_budget: int = Field(default=5, ge=1, le=1000)
    restart_window_s: float = Field(default=60.0, gt=0, le=86_400)
    status_interval_s: float = Field(default=1.0, gt=0, le=60)
    status_stale_s: float = Field(default=10.0, gt=0, le=3600)
    stop_timeout_s: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _consistent(self) -> SupervisionSettings:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s must be at least restart_backoff_s")
        if self.status_stale_s <= self.status_interval_s:
            raise ValueError("status_stale_s must be above status_interval_s")
        return self


class ServerSettings(_Model):
    """Everything a server process needs, with paths resolved against ``home``."""

    home: Path
    api: ApiSettings = ApiSettings()
    broker: BrokerSettings = BrokerSettings()
    store: StoreSettings = StoreSettings()
    keystore: KeystoreSettings = KeystoreSettings()
    pki: PkiSettings = PkiSettings()
    campaigns: CampaignSettings = CampaignSettings()
    ota: OtaSettings = OtaSettings()
    attestation: AttestationSettings = AttestationSettings()
    ingest: IngestSettings = IngestSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    ca: dict[str, CaSettings]

    def path(self, relative: str) -> Path:
        """Resolve a path from the file against the home directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.home / candidate

    def store_url(self) -> str:
        """The store URL with a relative SQLite path made absolute."""
        prefix = "sqlite:///"
        url = self.store.url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(self.home / url[len(prefix) :])
        return url

    def crl_url(self, ca: str) -> str:
        """Where the CRL of a CA is published."""
        return f"{self.api.public_url.rstrip('/')}/crl/{ca}.crl"

    def ocsp_url(self) -> str:
        """Where the OCSP responder answers."""
        return f"{self.api.public_url.rstrip('/')}/ocsp"


def load_server_settings(home: Path) -> ServerSettings:
    """Read and check ``home/trustfleet.toml``.

    The home (and the folders above it), the file, the SoftHSM2 configuration and an explicit
    ``[keystore] module`` (and the folders above it) must be owned by root or this user and
    not writable by group or others: a process that may run as root loads that module.

    Raises:
        Config: The file is missing, is not TOML, or has a wrong or unknown setting; or one of
            those paths could be changed by someone else (code ``config.path.unsafe``).
    """
    path = home / CONFIG_FILE
    absent = Config(
        f"no server home at {home} (missing {CONFIG_FILE})",
        hint="create one with 'trustfleet server init --home DIR'",
    )
    if home.is_dir() and path.is_file():
        check_trusted(home, what="the server home", parents=True)
        check_trusted(path, what="the configuration file", parents=True)
    settings = load_toml_model(
        path,
        ServerSettings,
        extra={"home": home.resolve()},
        missing=absent,
        invalid_hint="see the comments in trustfleet.toml for the allowed values",
    )
    lacking = [name for name in CA_NAMES if name not in settings.ca]
    if lacking:
        raise Config(f"{path}: no [ca.{lacking[0]}] section", hint="restore it from a backup")
    check_loaded_code(settings.keystore.module, settings.path(settings.keystore.softhsm_conf))
    return settings


def render_server_toml(settings: ServerSettings) -> str:
    """The text of a self-documenting ``trustfleet.toml`` for these settings."""
    api, pki = settings.api, settings.pki
    lines = [
        "# TrustFleet server configuration. Paths are relative to this file's directory.",
        "# PINs are never written here: each key URI names its PIN file (mode 0600) with",
        "# pin-source (RFC 7512); 'env:NAME' instead of a path reads an environment variable.",
        "",
        "[api]",
        "# HTTPS (TLS 1.3 only): EST enrollment, CRLs and OCSP.",
        f'host = "{api.host}"',
        f"port = {api.port}",
        "# Base URL written into certificates (CRL distribution point, OCSP).",
        f'public_url = "{api.public_url}"',
        "# Worker processes sharing the port (SO_REUSEPORT).",
        f"workers = {api.workers}",
        f'tls_cert = "{api.tls_cert}"  # server certificate + device CA',
        f'tls_key = "{api.tls_key}"   # the one key on disk: mode 0600',
        f"max_body_bytes = {api.max_body_bytes}      # larger request bodies get 413",
        f"max_header_bytes = {api.max_header_bytes}",
        f"idle_timeout_s = {api.idle_timeout_s}          # between requests; a stalled reader",
        f"handshake_timeout_s = {api.handshake_timeout_s}     # the whole TLS handshake",
        f"request_timeout_s = {api.request_timeout_s}       # a whole request (head and body)",
        "# Open connections per worker, and per client address per worker; more are closed.",
        f"max_connections = {api.max_connections}",
        f"max_connections_per_source = {api.max_connections_per_source}",
        f"write_buffer_bytes = {api.write_buffer_bytes}  # queued for a client: a response waits",
        "# Refused enrollments: per client address (or device) and reason, the first",
        "# refusal_burst in a window are logged one by one, the rest as one event with a count.",
        f"refusal_window_s = {api.refusal_window_s}",
        f"refusal_burst = {api.refusal_burst}",
        f"refusal_max_keys = {api.refusal_max_keys}  # tracked per worker; the rest share one",
        "",
        *_render_broker(settings.broker),
        "",
        *_render_campaigns(settings.campaigns),
        "",
        "[store]",
        "# SQLAlchemy URL. SQLite (WAL) by default; for scale-out use",
        '# "postgresql+psycopg://user@host:5432/trustfleet".',
        f'url = "{settings.store.url}"',
        "",
        "[keystore]",
        '# PKCS#11 module; empty means "find SoftHSM2".',
        f'module = "{settings.keystore.module}"',
        "# SoftHSM2 configuration of this home (its token directory is tokens/store).",
        f'softhsm_conf = "{settings.keystore.softhsm_conf}"',
        "",
        "[pki]",
        f'organization = "{pki.organization}"',
        f"ldevid_validity_days = {pki.ldevid_validity_days}   # operational certificates",
        f"idevid_validity_days = {pki.idevid_validity_days}  # factory identities",
        f"crl_validity_hours = {pki.crl_validity_hours}       # CRL nextUpdate - thisUpdate",
        f"crl_refresh_margin_hours = {pki.crl_refresh_margin_hours}  # reissue this long before",
        f"ocsp_validity_minutes = {pki.ocsp_validity_minutes}",
        f"ocsp_max_nonce_bytes = {pki.ocsp_max_nonce_bytes}  # longer OCSP nonces: refused",
        f"reopen_validity_hours = {pki.reopen_validity_hours}  # a 'device reopen' lapses after",
        "",
        *_render_ota(settings.ota),
        "",
        *_render_attestation(settings.attestation),
        "",
        *_render_ingest(settings.ingest),
        "",
        *_render_supervision(settings.supervision),
    ]
    for name in CA_NAMES:
        ca = settings.ca[name]
        lines += ["", f"[ca.{name}]", f'key = "{ca.key}"', f'cert = "{ca.cert}"']
    return "\n".join(lines) + "\n"


def _render_broker(broker: BrokerSettings) -> list[str]:
    return [
        "[broker]",
        "# Mosquitto, started and supervised by 'trustfleet server run': mutual TLS 1.3,",
        "# username = certificate CN, each device confined to "
        f"{DEVICE_TOPIC_ROOT}/<id>/# (docs/mqtt.md).",
        f'host = "{broker.host}"',
        f"port = {broker.port}",
        f'tls_cert = "{broker.tls_cert}"',
        f'tls_key = "{broker.tls_key}"',
        "# The fleet service's own MQTT identity: certificate CN (never device-id shaped),",
        "# its key inside the service token, and its certificate from the device CA.",
        f'service_identity = "{broker.service_identity}"',
        f'service_key = "{broker.service_key}"',
        f'service_cert = "{broker.service_cert}"',
        f"# Ingest processes sharing $share/{INGEST_GROUP}/{DEVICE_TOPIC_ROOT}/+/... "
        "(0: no ingest).",
        f"ingest_workers = {broker.ingest_workers}",
        f"ingest_batch_max = {broker.ingest_batch_max}          # messages per transaction",
        f"ingest_batch_interval_s = {broker.ingest_batch_interval_s}  # or this long, first",
        f"max_payload_bytes = {broker.max_payload_bytes}     # larger messages are dropped",
        "# The broker's limit on each device's publications: a sustained rate (token bucket)",
        "# and a burst above it; the rest is refused (MQTT 5: PUBACK 135).",
        f"device_rate_per_s = {broker.device_rate_per_s}",
        f"device_burst = {broker.device_burst}",
        "# Bounded telemetry: rows older than the window, then the oldest beyond max_rows,",
        "# are deleted every retention_interval_s.",
        f"telemetry_retention_days = {broker.telemetry_retention_days}",
        f"telemetry_max_rows = {broker.telemetry_max_rows}",
        f"retention_interval_s = {broker.retention_interval_s}",
        "# How often server run checks the store for revocations and new CRLs.",
        f"revocation_poll_s = {broker.revocation_poll_s}",
    ]


def _render_ota(ota: OtaSettings) -> list[str]:
    return [
        "[ota]",
        "# The TUF update repository (docs/ota.md): metadata and hashed targets under repo_dir,",
        "# staged builds under staging_dir. Root keys live in tokens tf-tuf-root-1..N.",
        f'repo_dir = "{ota.repo_dir}"',
        f'staging_dir = "{ota.staging_dir}"',
        f"root_threshold = {ota.root_threshold}   # root signatures needed (of root_keys)",
        f"root_keys = {ota.root_keys}",
        f"root_expiry_days = {ota.root_expiry_days}",
        f"targets_expiry_days = {ota.targets_expiry_days}",
        f"snapshot_expiry_days = {ota.snapshot_expiry_days}",
        f"timestamp_expiry_hours = {ota.timestamp_expiry_hours}",
        "# server run re-signs the timestamp this long before it expires, checking every",
        "# timestamp_check_s seconds.",
        f"timestamp_refresh_margin_hours = {ota.timestamp_refresh_margin_hours}",
        f"timestamp_check_s = {ota.timestamp_check_s}",
        "# Longest wait for the repository's writer lock (then the command fails; server run",
        "# retries the timestamp refresh at the next check).",
        f"lock_timeout_s = {ota.lock_timeout_s}",
        "# Deltas computed at publish time, from each of the previous N releases of the model.",
        f"delta_from_previous = {ota.delta_from_previous}",
        f"max_image_bytes = {ota.max_image_bytes}   # larger images are refused",
    ]


def _render_campaigns(campaigns: CampaignSettings) -> list[str]:
    return [
        "[campaigns]",
        "# Update campaigns (docs/ota.md): server run steps every running campaign each tick_s.",
        f"tick_s = {campaigns.tick_s}",
        "# Default time a notified device has to finish (campaign create --device-timeout).",
        f"device_timeout_s = {campaigns.device_timeout_s}",
        "# Most devices sent the update command in one tick (all campaigns together).",
        f"max_notify_per_tick = {campaigns.max_notify_per_tick}",
    ]


def _render_supervision(sup: SupervisionSettings) -> list[str]:
    return [
        "[supervision]",
        "# server run restarts a dead worker after restart_backoff_s, doubling per crash up to",
        "# restart_backoff_max_s. A kind of worker dying more than restart_budget times in",
        "# restart_window_s is crash-looping: the rest keeps serving, /readyz answers 503 and a",
        "# service.degraded event is recorded (docs/operations.md).",
        f"restart_backoff_s = {sup.restart_backoff_s}",
        f"restart_backoff_max_s = {sup.restart_backoff_max_s}",
        f"restart_budget = {sup.restart_budget}",
        f"restart_window_s = {sup.restart_window_s}",
        "# The status file behind /readyz: rewritten every status_interval_s; older than",
        "# status_stale_s means not ready.",
        f"status_interval_s = {sup.status_interval_s}",
        f"status_stale_s = {sup.status_stale_s}",
        f"stop_timeout_s = {sup.stop_timeout_s}  # SIGTERM, then SIGKILL after this long",
    ]


def _render_attestation(att: AttestationSettings) -> list[str]:
    return [
        "[attestation]",
        "# Remote attestation (docs/attestation.md): server run challenges every device with an",
        "# AK at boot and every interval_s (+/- jitter_fraction), and quarantines a device whose",
        "# evidence fails or that misses max_missed challenges in a row.",
        f"enabled = {'true' if att.enabled else 'false'}  # false: no challenges (no TPMs)",
        f"interval_s = {att.interval_s}",
        f"jitter_fraction = {att.jitter_fraction}",
        f"response_timeout_s = {att.response_timeout_s}  # unanswered past this: missed",
        f"max_missed = {att.max_missed}",
        f"nonce_max_age_s = {att.nonce_max_age_s}      # evidence older than this is stale",
        f"max_evidence_bytes = {att.max_evidence_bytes}",
        f"max_request_bytes = {att.max_request_bytes}  # AK enrollment request bodies",
        f"enrollment_ttl_s = {att.enrollment_ttl_s}    # to return the activated secret",
        "# A quarantined device that runs a published release at least as new as the one it",
        "# was quarantined on, and then passes attestation, is released automatically.",
        f"auto_release = {'true' if att.auto_release else 'false'}",
        "# PEM bundle of the TPM manufacturers' EK CA certificates (root and intermediates).",
        f'tpm_manufacturer_cas = "{att.tpm_manufacturer_cas}"',
        f"retention_days = {att.retention_days}  # challenges and verdicts kept this long",
        f"poll_s = {att.poll_s}  # how often server run's scheduler looks for due work",
    ]


def _render_ingest(ingest: IngestSettings) -> list[str]:
    return [
        "[ingest]",
        "# Device messages (docs/mqtt.md): a message whose ts lies more than ts_max_past_s",
        "# before or ts_max_future_s after the server's clock, or that nests deeper than",
        "# max_json_depth, is dropped alone (code ingest.ts_range / ingest.too_deep).",
        f"ts_max_past_s = {ingest.ts_max_past_s}",
        f"ts_max_future_s = {ingest.ts_max_future_s}",
        f"max_json_depth = {ingest.max_json_depth}",
        "# Dropped messages are counted per device; each worker writes at most one",
        "# ingest.rejected event per device per window (with the count and the codes), and",
        "# tracks at most rejected_max_devices devices at once (the rest are summed up).",
        f"rejected_event_window_s = {ingest.rejected_event_window_s}",
        f"rejected_max_devices = {ingest.rejected_max_devices}",
    ]
