"""The monitoring contract: one window of a device's metrics, and what a detector finds in it.

Names follow AWS IoT Device Defender's metrics (without the ``aws:`` prefix), so an operator who
knows Device Defender reads them the same way; what Device Defender has as custom metrics
(processes, CPU, memory, failed logins, executables, watched files) has a name here too.
Service-side signals (what the broker, EST and attestation saw of the device) start with
``svc-``. This module is pure and is used by the agent (encode), the service (decode, detect),
the scenario generator and the evaluator alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

__all__ = [
    "DETECTORS",
    "DEVICE_NUMBERS",
    "DEVICE_SETS",
    "SERVICE_NUMBERS",
    "SERVICE_SETS",
    "SEVERITIES",
    "Detector",
    "DetectorKind",
    "Finding",
    "MetricsRecord",
    "Severity",
    "Source",
]

Source = Literal["device", "service"]
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = ("low", "medium", "high", "critical")
DetectorKind = Literal["rule", "baseline", "model"]
DETECTORS: Final[tuple[DetectorKind, ...]] = ("rule", "baseline", "model")

DEVICE_NUMBERS: Final[tuple[str, ...]] = (
    "all-bytes-in",  # bytes received in the window, every interface but loopback
    "all-bytes-out",
    "all-packets-in",
    "all-packets-out",
    "num-listening-tcp-ports",
    "num-listening-udp-ports",
    "num-established-tcp-connections",  # at the end of the window
    "num-processes",
    "cpu-percent",  # mean over the window, 0..100 (all cores)
    "memory-percent",  # used / total at the end of the window, 0..100
    "failed-logins",  # failed local logins in the window
)
"""Numeric device metrics (a window's counts or a gauge at its end)."""

DEVICE_SETS: Final[tuple[str, ...]] = (
    "listening-tcp-ports",  # "22", "8883" …
    "listening-udp-ports",
    "destination-ip-addresses",  # remote addresses of connections seen in the window
    "remote-endpoints",  # "address:port" of connections seen in the window
    "executables",  # sha256 (hex) of the executables of running processes
    "watched-files",  # "path=sha256hex" of each watched file
)
"""Set-valued device metrics (members are short strings)."""

SERVICE_NUMBERS: Final[tuple[str, ...]] = (
    "svc-connect-attempts",  # CONNECTs with this device's identity (accepted or refused)
    "svc-connect-refusals",
    "svc-disconnects",
    "svc-authz-failures",  # publishes/subscribes the broker denied
    "svc-messages-in",  # PUBLISH packets from the device
    "svc-bytes-in",  # their payload bytes
    "svc-est-refusals",  # enrollment / re-enrollment refusals naming the device
    "svc-attestation-findings",  # findings of failed verdicts in the window
    "svc-missed-challenges",
)
"""Numeric service-side signals of one device in a window."""

SERVICE_SETS: Final[tuple[str, ...]] = ("svc-source-addresses",)
"""Set-valued service-side signals (the addresses the device connected from)."""


@dataclass(frozen=True)
class MetricsRecord:
    """One window of one device's metrics, from the device or from the service's view of it.

    Attributes:
        device_id: The device.
        model: Its model (the cohort), as the inventory records it.
        source: ``device`` (the agent's report) or ``service`` (what the service saw).
        end: End of the window (aware, UTC).
        interval_s: The window's length.
        numbers: Numeric metrics by name (absent: not reported).
        sets: Set-valued metrics by name (absent: not reported).
    """

    device_id: str
    model: str
    source: Source
    end: datetime
    interval_s: int
    numbers: Mapping[str, float] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """Something a detector noticed in one device's window: the seed of an alert.

    Attributes:
        device_id: The device.
        kind: A stable dotted code, e.g. ``monitor.destination.new``, ``monitor.volume.high``,
            ``monitor.model.outlier``; playbooks match on it.
        severity: How bad.
        detector: ``rule``, ``baseline`` or ``model``.
        at: The end of the window that showed it.
        summary: One readable line (what, how much, against what).
        evidence: JSON-able detail: the metrics and their expected ranges, the window, and for
            the model the features that contributed most, by name.
    """

    device_id: str
    kind: str
    severity: Severity
    detector: DetectorKind
    at: datetime
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)


class Detector(Protocol):
    """The whole detection pipeline for a fleet: records in, findings out (pure, in memory)."""

    def observe(self, record: MetricsRecord) -> list[Finding]:
        """Score one record (and learn from it); records of a device arrive in time order."""
        ...
