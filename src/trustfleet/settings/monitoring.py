"""The ``[monitoring]`` section of ``trustfleet.toml``: detection, alerts, playbooks, notifications.

Each field's docstring is the comment written above it in the file (docs/monitoring.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trustfleet.configfile import ConfigModel

__all__ = ["MonitoringSettings", "SyslogSettings", "WebhookSettings"]

_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"


class WebhookSettings(ConfigModel):
    """A webhook that receives alerts as JSON, signed with HMAC-SHA256 over a timestamp and the
    body (header X-TrustFleet-Signature: t=<unix seconds>,v1=<hex>; docs/monitoring.md)."""

    name: str = Field(pattern=_NAME)
    """Its name in playbooks and in the notifications outbox."""
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=512)
    """Where alerts are POSTed."""
    secret_file: str = Field(min_length=1, max_length=512)
    """A file (0600, relative to the home) holding the shared HMAC secret."""
    ca: str = ""
    """For https: the CA certificate (PEM) to trust; empty: the system's."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    """One delivery attempt's deadline."""


class SyslogSettings(ConfigModel):
    """A syslog receiver: alerts as RFC 5424 messages over UDP (RFC 5426) or TCP (RFC 6587,
    octet counting)."""

    name: str = Field(pattern=_NAME)
    """Its name in playbooks and in the notifications outbox."""
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=514, ge=1, le=65535)
    transport: Literal["udp", "tcp"] = "udp"
    app_name: str = Field(default="trustfleet", pattern=r"^[!-~]{1,48}$")
    """The APP-NAME field of each message."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class MonitoringSettings(ConfigModel):
    """Security monitoring (docs/monitoring.md): device and service metrics, detection, alerts,
    playbooks and notifications."""

    enabled: bool = True
    """Run the monitor (server run's monitor#0): score metrics, raise alerts, run playbooks."""
    rules: str = ""
    """The detection rules (TOML, relative to the home); empty: the built-in rules."""
    playbooks: str = ""
    """The response playbooks (TOML, relative to the home); empty: the built-in playbook
    (notify every receiver, act on nothing without an operator)."""
    learning_hours: float = Field(default=24.0, ge=0, le=24 * 60)
    """How long baselines and the model learn a device and its model before they raise."""
    alert_quiet_s: int = Field(default=3600, ge=1, le=30 * 86_400)
    """Findings of one kind on one device join the open alert until it has been quiet this long."""
    poll_s: float = Field(default=1.0, gt=0, le=60)
    """How often the monitor reads new metrics windows."""
    service_window_s: int = Field(default=60, ge=1, le=3600)
    """The window of service-side signals per device (broker, EST, attestation)."""
    metrics_retention_days: int = Field(default=7, ge=1, le=3650)
    """How long metrics windows are kept (at least the learning period is replayed on start)."""
    max_devices: int = Field(default=100_000, ge=1, le=10_000_000)
    """Devices whose detection state is kept in memory (the least recently seen go first)."""
    webhooks: list[WebhookSettings] = []
    syslog: list[SyslogSettings] = []
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    """Delivery attempts of one notification before it is marked failed."""
    notify_backoff_s: float = Field(default=2.0, gt=0, le=3600)
    """The first retry's delay; it doubles up to notify_backoff_max_s."""
    notify_backoff_max_s: float = Field(default=600.0, gt=0, le=86_400)
    webhook_tolerance_s: int = Field(default=300, ge=1, le=86_400)
    """How old a signed timestamp a receiver should accept (what docs and the verifier use)."""

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringSettings:
        names = [w.name for w in self.webhooks] + [s.name for s in self.syslog]
        if len(names) != len(set(names)):
            raise ValueError("webhook and syslog receivers need distinct names")
        if self.notify_backoff_max_s < self.notify_backoff_s:
            raise ValueError("notify_backoff_max_s must be at least notify_backoff_s")
        return self
