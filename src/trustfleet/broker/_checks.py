"""Checks of the broker's configuration values: each refusal is one readable ``Config`` error.

Every value that reaches ``mosquitto.conf`` or the guard plugin's options passes here first.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from trustfleet.broker._names import ADMIN_USERNAME, UNPRIVILEGED_USER
from trustfleet.errors import Config
from trustfleet.pki import DEVICE_ID_PATTERN

if TYPE_CHECKING:
    from trustfleet.broker._config import BrokerConfig

__all__ = [
    "check_conf_path",
    "check_host",
    "check_limits",
    "check_run_as",
    "check_service_identity",
]

_SERVICE_IDENTITY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_DEVICE_ALPHABET = re.compile(r"[a-z0-9-]*")
_MAX_PACKET_BYTES = 256 * 1024 * 1024  # MQTT's own ceiling (remaining length)


def check_host(host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise Config(
            f"The broker host {host!r} is not an IP address.",
            hint="Give the address to bind, such as 127.0.0.1.",
            code="broker.host",
        ) from exc


def check_service_identity(name: str) -> None:
    if (
        not _SERVICE_IDENTITY.fullmatch(name)
        or DEVICE_ID_PATTERN.fullmatch(name)
        or _DEVICE_ALPHABET.fullmatch(name)
    ):
        raise Config(
            f"The broker service identity {name!r} is not allowed.",
            hint="Use 1-64 characters of [A-Za-z0-9._:-] with at least one outside the "
            "device-id alphabet [a-z0-9-], e.g. with a '.' such as 'svc.ingest'.",
            code="broker.service_identity",
        )
    if name == ADMIN_USERNAME:
        raise Config("A service identity cannot be the broker admin.", code="broker.identity")


def check_run_as(user: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise Config("The broker's run_as user name is malformed.", code="broker.user")
    if user == "root":
        raise Config(
            "The broker must not run as root.",
            hint=f"Leave run_as unset (the service then uses '{UNPRIVILEGED_USER}' as root).",
            code="broker.user.root",
        )


def check_limits(config: BrokerConfig) -> None:
    bounds: list[tuple[str, float, float, float]] = [
        ("device_max_payload_bytes", config.device_max_payload_bytes, 256, 256 * 1024 * 1024),
        ("device_rate_per_s", config.device_rate_per_s, 0.01, 1e5),
        ("device_burst", config.device_burst, 1, 1e6),
        ("device_max_inflight", config.device_max_inflight, 1, 65535),
        ("stats_interval_s", config.stats_interval_s, 0, 86_400),
        ("stats_max_devices", config.stats_max_devices, 1, 1e7),
        ("stats_max_bytes", config.stats_max_bytes, 2048, _MAX_PACKET_BYTES),
        ("max_queued_messages", config.max_queued_messages, 1, 1e9),
        ("packet_limit_bytes", config.packet_limit_bytes, 1024, _MAX_PACKET_BYTES),
    ]
    for name, value, low, high in bounds:
        if not (math.isfinite(value) and low <= value <= high):
            raise Config(
                f"The broker's {name} {value} is outside {low:g}..{high:g}.",
                code="broker.limit",
            )
    if int(config.stats_interval_s) != config.stats_interval_s:
        raise Config("The broker's stats_interval_s must be whole seconds.", code="broker.limit")
    if config.packet_limit_bytes < config.device_max_payload_bytes + 256:
        raise Config(
            "The broker's max_packet_bytes leaves no room for a device's largest message.",
            code="broker.limit",
        )


def check_conf_path(path: Path) -> None:
    if any(c.isspace() for c in str(path)) or "#" in str(path):
        raise Config(
            f"The path {path} contains whitespace or '#', which mosquitto.conf cannot hold.",
            hint="Move the server home to a path without spaces.",
            code="broker.path",
        )
