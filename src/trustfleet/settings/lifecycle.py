"""The ``[lifecycle]`` section of ``trustfleet.toml``: ceremonies, rollover, decommission,
backups and the expiry watch (docs/lifecycle.md).

Each field's ``description`` is the comment written above it in the file.
"""

from __future__ import annotations

from pydantic import Field

from trustfleet.configfile import ConfigModel

__all__ = ["LifecycleSettings"]


class LifecycleSettings(ConfigModel):
    """Keys and devices from creation to disposal (docs/lifecycle.md)."""

    offline_dir: str = ""
    """Where ceremonies look for the offline tokens (root CA, TUF root keys) when no --offline
    is given; empty: ceremonies need --offline. server run never reads it."""
    root_crl_validity_days: int = Field(default=365, ge=1, le=3650)
    """The root CA's CRL is signed only in a ceremony; each one is valid this long."""
    intermediate_validity_days: int = Field(default=1825, ge=30, le=7300)
    """Validity of a manufacturing or device CA issued in a ceremony."""
    decommission_timeout_s: float = Field(default=600.0, gt=0, le=30 * 24 * 3600)
    """A device that has not returned verified wipe evidence this long after the request is
    decommissioned unverified (and flagged for operators)."""
    rekey_timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    """How long 'device rekey --wait' waits for the devices to enroll their new keys."""
    expiry_warn_days: int = Field(default=30, ge=1, le=365)
    """Certificates, CRLs, OCSP signing and TUF metadata expiring within this many days raise a
    lifecycle.expiry event (and a notification), listed by 'server check'."""
    expiry_check_s: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    """How often server run looks for what is about to expire."""
    backup_dir: str = "backups"
    """Where server run puts the backup it takes before migrating the store forward."""
    backup_before_migrate: bool = True
    """Take a backup before a newer version migrates the store (server run)."""
    rekey_rate_per_s: float = Field(default=20.0, gt=0, le=1000)
    """'device rekey' and 'device reenroll' send at most this many commands a second (the
    devices' EST requests follow them)."""
