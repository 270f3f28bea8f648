"""``[rabbitmq]``: an external RabbitMQ cluster as the device broker (ADR 0024).

Used when ``[broker] kind = "rabbitmq"``. The operator runs the nodes (docs/deployment.md);
``server run`` attaches to them instead of starting Mosquitto.
"""

from __future__ import annotations

import re

from pydantic import Field, model_validator

from trustfleet.configfile import ConfigModel

__all__ = ["RabbitSettings"]

_HTTP_URL = r"^https?://[^\s/]+(/[^\s]*)?$"
_AMQP_URL = r"^amqps?://[^\s/]+/?$"


class RabbitSettings(ConfigModel):
    """How the service reaches a RabbitMQ 3.10+ cluster with its MQTT plugin."""

    management_urls: list[str] = Field(default_factory=list, max_length=16)
    """The management API of each node (``http(s)://host:15672``); tried in order."""
    amqp_urls: list[str] = Field(default_factory=list, max_length=16)
    """AMQP 0-9-1 of each node (``amqp(s)://host:5672``): the service consumes device messages
    from quorum queues and publishes commands there; tried in order."""
    username: str = Field(default="trustfleet", min_length=1, max_length=128)
    """The service's user (tag ``administrator`` for the management API)."""
    password_file: str = "secrets/rabbitmq.password"  # noqa: S105  # a path, not a password
    """Its password, in a file of mode 0600 (relative to the home)."""
    cafile: str = ""
    """CA bundle for ``https``/``amqps`` URLs (empty: the system's)."""
    vhost: str = Field(default="/", min_length=1, max_length=255)
    """The devices' vhost (the MQTT plugin's ``mqtt.vhost``)."""
    trust_dirs: list[str] = Field(default_factory=list, max_length=16)
    """Folders the nodes read their device trust from (one shared, or one per node): the CA
    bundle ``ca.pem`` (each node's ``cacertfile``) and the hashed CRL folder ``crl/`` (its
    ``ssl_crl_hash_dir``). The service rewrites them on every CRL and CA change."""
    ingest_queue: str = Field(default="tf.ingest", min_length=1, max_length=200)
    """The durable quorum queue the ingest workers of every host consume (competing)."""
    attest_queue: str = Field(default="tf.attest", min_length=1, max_length=200)
    """The quorum queue of the attestation scheduler's boot announcements."""
    prefetch: int = Field(default=200, ge=1, le=10_000)
    """Unacknowledged messages per consumer (acknowledged once stored)."""
    device_sync_s: float = Field(default=5.0, gt=0, le=3600)
    """How often the device users are compared with the store's active devices."""
    request_timeout_s: float = Field(default=5.0, gt=0, le=120)
    """Bound on one management API request or AMQP connection attempt to one node."""

    @model_validator(mode="after")
    def _urls(self) -> RabbitSettings:
        for urls, pattern, what in (
            (self.management_urls, _HTTP_URL, "management_urls are http(s)://host:port"),
            (self.amqp_urls, _AMQP_URL, "amqp_urls are amqp(s)://host:port"),
        ):
            for url in urls:
                if not re.match(pattern, url):
                    raise ValueError(f"{what}, not {url[:80]!r}")
        return self
