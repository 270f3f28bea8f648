"""The sections of ``trustfleet.toml`` for what ``server run`` does over time.

Campaigns, the OTA repository, attestation, the audit log, ingest bounds and worker
supervision. Each field's ``description`` is the comment written above it in the file.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from trustfleet.configfile import ConfigModel

__all__ = [
    "AttestationSettings",
    "AuditSettings",
    "CampaignSettings",
    "IngestSettings",
    "OtaSettings",
    "SupervisionSettings",
    "WitnessSettings",
]


class CampaignSettings(ConfigModel):
    """Update campaigns (docs/ota.md): server run steps every running campaign each tick_s."""

    tick_s: float = Field(default=1.0, gt=0, le=3600)
    device_timeout_s: int = Field(default=1800, ge=1, le=7 * 24 * 3600)
    """Default time a notified device has to finish (campaign create --device-timeout)."""
    max_notify_per_tick: int = Field(default=500, ge=1, le=100_000)
    """Most devices sent the update command in one tick (all campaigns together)."""


class OtaSettings(ConfigModel):
    """The TUF update repository and releases (docs/ota.md).

    Metadata and hashed targets under ``repo_dir``, staged builds under ``staging_dir``. Root
    keys live in tokens tf-tuf-root-1..N.
    """

    repo_dir: str = "ota/repo"
    staging_dir: str = "ota/staging"
    root_threshold: int = Field(default=2, ge=1, le=16)
    """Root signatures needed (of root_keys)."""
    root_keys: int = Field(default=3, ge=1, le=16)
    root_expiry_days: int = Field(default=365, ge=1, le=3650)
    """How long each role's signed metadata is valid: root, targets and snapshot in days, the
    timestamp in hours."""
    targets_expiry_days: int = Field(default=90, ge=1, le=3650)
    snapshot_expiry_days: int = Field(default=7, ge=1, le=365)
    timestamp_expiry_hours: int = Field(default=24, ge=1, le=24 * 31)
    timestamp_refresh_margin_hours: int = Field(default=6, ge=0, le=24 * 30)
    """server run re-signs the timestamp this long before it expires, checking every
    timestamp_check_s seconds."""
    timestamp_check_s: float = Field(default=60.0, gt=0, le=3600)
    lock_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """Longest wait for the repository's writer lock (then the command fails; server run retries
    the timestamp refresh at the next check)."""
    delta_from_previous: int = Field(default=3, ge=0, le=16)
    """Deltas computed at publish time, from each of the previous N releases of the model."""
    max_image_bytes: int = Field(default=1024**3, ge=1024, le=16 * 1024**3)
    """Larger images are refused."""

    @model_validator(mode="after")
    def _consistent(self) -> OtaSettings:
        if self.root_threshold > self.root_keys:
            raise ValueError("root_threshold must not exceed root_keys")
        if self.timestamp_refresh_margin_hours >= self.timestamp_expiry_hours:
            raise ValueError("timestamp_refresh_margin_hours must be below timestamp_expiry_hours")
        return self


class AttestationSettings(ConfigModel):
    """Remote attestation: challenge schedule, bounds, quarantine policy (docs/attestation.md).

    server run challenges every device with an AK at boot and every ``interval_s`` (+/-
    ``jitter_fraction``), and quarantines a device whose evidence fails or that misses
    ``max_missed`` challenges in a row.
    """

    enabled: bool = True
    """false: no challenges (no TPMs)."""
    interval_s: float = Field(default=600.0, ge=5, le=7 * 86_400)
    jitter_fraction: float = Field(default=0.1, ge=0, le=0.5)
    response_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    """Unanswered past this: missed."""
    max_missed: int = Field(default=3, ge=1, le=100)
    nonce_max_age_s: float = Field(default=60.0, gt=0, le=3600)
    """Evidence older than this is stale."""
    max_evidence_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    max_request_bytes: int = Field(default=16 * 1024, ge=1024, le=256 * 1024)
    """AK enrollment request bodies."""
    enrollment_ttl_s: float = Field(default=300.0, gt=0, le=86_400)
    """To return the activated secret."""
    auto_release: bool = True
    """A quarantined device that runs a published release at least as new as the one it was
    quarantined on, and then passes attestation, is released automatically."""
    tpm_manufacturer_cas: str = "public/tpm-manufacturer-cas.pem"
    """PEM bundle of the TPM manufacturers' EK CA certificates (root and intermediates)."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Challenges and verdicts kept this long."""
    poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often server run's scheduler looks for due work."""


class IngestSettings(ConfigModel):
    """What the ingest workers accept from devices beyond the payload bound (docs/mqtt.md)."""

    ts_max_past_s: int = Field(default=7 * 86_400, ge=60, le=366 * 86_400)
    """A message whose ts lies more than ts_max_past_s before or ts_max_future_s after the
    server's clock, or that nests deeper than max_json_depth, is dropped alone (code
    ingest.ts_range / ingest.too_deep)."""
    ts_max_future_s: int = Field(default=3600, ge=1, le=7 * 86_400)
    max_json_depth: int = Field(default=16, ge=2, le=64)
    rejected_event_window_s: int = Field(default=300, ge=1, le=86_400)
    """Dropped messages are counted per device; each worker writes at most one ingest.rejected
    event per device per window (with the count and the codes), and tracks at most
    rejected_max_devices devices at once (the rest are summed up)."""
    rejected_max_devices: int = Field(default=10_000, ge=1, le=1_000_000)


class SupervisionSettings(ConfigModel):
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
    """The status file behind /readyz: rewritten every status_interval_s; older than
    status_stale_s means not ready."""
    status_stale_s: float = Field(default=10.0, gt=0, le=3600)
    stop_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """SIGTERM, then SIGKILL after this long."""
    leader_check_s: float = Field(default=1.0, ge=0.1, le=30)
    """Singletons (campaign ticker, attestation scheduler, audit sequencer, monitor, CRL and
    TUF timestamp refresh, expiry watch, decommission sweep) run on one service host at a time
    when several share a PostgreSQL store: the leader checks its lock and the others try to
    take it this often (docs/deployment.md)."""

    @model_validator(mode="after")
    def _consistent(self) -> SupervisionSettings:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s must be at least restart_backoff_s")
        if self.status_stale_s <= self.status_interval_s:
            raise ValueError("status_stale_s must be above status_interval_s")
        return self


class WitnessSettings(ConfigModel):
    """A witness that cosigns the audit log's checkpoints (C2SP tlog-witness, docs/audit.md)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512)
    """Its base URL: checkpoints go to <url>/add-checkpoint."""
    key: str = Field(min_length=1, max_length=512)
    """Its cosignature verifier key (signed-note vkey of type 0x04), as `witness init` prints it."""
    ca: str = ""
    """For https: the CA certificate (or the witness's own certificate) to trust, PEM."""


class AuditSettings(ConfigModel):
    """The tamper-evident audit log (docs/audit.md): a Merkle tree of the security events."""

    origin: str = Field(default="trustfleet.local/audit", pattern=r"^[^\s+]{1,256}$")
    """The log's name: the first line of its checkpoints and its key's name in the signed notes
    (a schema-less URL, no spaces or '+'; C2SP tlog-checkpoint and signed-note)."""
    key: str = (
        "pkcs11:token=tf-service;object=audit-log;type=private"
        "?pin-source=file:secrets/tf-service.pin"
    )
    """The Ed25519 checkpoint key inside the service token (RFC 7512 URI)."""
    publish_dir: str = "audit/log"
    """Where the log is published as C2SP tlog-tiles (served at /audit/log/ over HTTPS)."""
    interval_s: float = Field(default=1.0, gt=0, le=60)
    """A new checkpoint at most this often while entries arrive."""
    batch_max: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most entries integrated into the tree per checkpoint."""
    witnesses: list[WitnessSettings] = []
    witness_timeout_s: float = Field(default=5.0, gt=0, le=120)
