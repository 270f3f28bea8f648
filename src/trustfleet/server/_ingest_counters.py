"""What one ingest worker did since it started (logged at stop)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["IngestCounters"]


@dataclass
class IngestCounters:
    """What one worker did since it started (logged at stop)."""

    received: int = 0
    stored_rows: int = 0
    accepted: int = 0
    malformed: int = 0
    refused: int = 0
    overflow: int = 0
    failed_batches: int = 0
    isolated: int = 0
    """Valid-looking messages the store refused, dropped alone after splitting their batch."""
    faults: int = 0
    """Messages whose processing raised (every drop, by code in ``by_code``)."""
    rejected_events: int = 0
    broker_stats_windows: int = 0
    """Service windows stored from the broker's statistics (docs/monitoring.md)."""
    by_code: dict[str, int] = field(default_factory=dict)
