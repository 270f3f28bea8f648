"""Security monitoring: device and service metrics, detectors, alerts and playbooks (pure)."""

from trustfleet.monitoring.records import (
    DETECTORS,
    DEVICE_NUMBERS,
    DEVICE_SETS,
    SERVICE_NUMBERS,
    SERVICE_SETS,
    SEVERITIES,
    Detector,
    Finding,
    MetricsRecord,
    Severity,
    Source,
)

__all__ = [
    "DETECTORS",
    "DEVICE_NUMBERS",
    "DEVICE_SETS",
    "SERVICE_NUMBERS",
    "SERVICE_SETS",
    "SEVERITIES",
    "Detector",
    "Finding",
    "MetricsRecord",
    "Severity",
    "Source",
]
