"""The Device Defender report's names and the record's (see :mod:`trustfleet.monitoring.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["CUSTOM_NUMBERS", "MAX_COUNT", "NET", "PORTS"]

MAX_COUNT: Final = 2**63 - 1
CUSTOM_NUMBERS: Final[Mapping[str, float]] = {
    "num-processes": float(MAX_COUNT),
    "cpu-percent": 100.0,
    "memory-percent": 100.0,
    "failed-logins": float(MAX_COUNT),
}
"""Custom numeric metrics and their upper bound."""
NET: Final[Mapping[str, str]] = {
    "bytes_in": "all-bytes-in",
    "bytes_out": "all-bytes-out",
    "packets_in": "all-packets-in",
    "packets_out": "all-packets-out",
}
PORTS: Final[Mapping[str, tuple[str, str]]] = {
    "listening_tcp_ports": ("listening-tcp-ports", "num-listening-tcp-ports"),
    "listening_udp_ports": ("listening-udp-ports", "num-listening-udp-ports"),
}
