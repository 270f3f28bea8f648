"""Security monitoring: device and service metrics, detectors, alerts and playbooks (pure)."""

from trustfleet.monitoring.records import (
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
