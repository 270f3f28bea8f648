"""Device metrics reports on their way into the store (the ingest workers' ``metrics`` topic).

:class:`MetricsIngest` decodes each report with
:func:`trustfleet.monitoring.report.decode_report` against the device's model (read from the
inventory and cached, bounded), and stores the accepted windows of a batch in one transaction
with ``tx.monitor_metrics.add_many``. A report the store still refuses is isolated by storing
the batch's windows one by one. :func:`apply_metrics_retention` drops old windows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from trustfleet.errors import InvalidInput, TrustFleetError, Unavailable
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.report import decode_report
from trustfleet.settings import ServerSettings
from trustfleet.store import UnitOfWork
from trustfleet.wire import (
    DEVICE_TOPIC_ROOT,
    MAX_METRICS_REPORT_BYTES,
    MAX_SET_MEMBER_CHARS,
    MAX_SET_MEMBERS,
    parse_device_topic,
)

__all__ = [
    "MODEL_CACHE_MAX",
    "MODEL_CACHE_TTL_S",
    "MetricsIngest",
    "MetricsOutcome",
    "apply_metrics_retention",
    "metrics_device",
]

logger = logging.getLogger(__name__)

MODEL_CACHE_MAX: Final = 100_000
"""Devices whose model an ingest worker remembers (the cache is emptied when full)."""
MODEL_CACHE_TTL_S: Final = 300.0
"""How long a remembered model is trusted before the inventory is read again."""


def metrics_device(topic: str) -> str | None:
    """The device id of a ``tf/v1/d/<id>/metrics`` topic, else None."""
    if not topic.startswith(DEVICE_TOPIC_ROOT) or not topic.endswith("/metrics"):
        return None
    parsed = parse_device_topic(topic)
    return parsed[0] if parsed is not None and parsed[1] == "metrics" else None


@dataclass
class MetricsOutcome:
    """What one batch of reports became."""

    stored: int = 0
    """Windows inserted (a re-sent window is skipped, not counted)."""
    rejected: list[tuple[str, str]] = field(default_factory=list)
    """(device id, code) of windows the store refused alone."""


class MetricsIngest:
    """Decode and store device metrics reports for one ingest worker.

    Args:
        settings: The server home (``[broker] max_payload_bytes``, ``[ingest]`` time bounds).
        uow: The store.
        clock: A monotonic clock for the model cache.
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        uow: UnitOfWork,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._max_bytes = min(MAX_METRICS_REPORT_BYTES, settings.broker.max_payload_bytes)
        self._max_past_s = settings.ingest.ts_max_past_s
        self._max_future_s = settings.ingest.ts_max_future_s
        self._models: dict[str, tuple[str, float]] = {}

    def model(self, device_id: str) -> str:
        """The device's model (cached).

        Raises:
            InvalidInput: ``monitor.report.device``: the device is not in the inventory.
        """
        cached = self._models.get(device_id)
        now = self._clock()
        if cached is not None and now - cached[1] < MODEL_CACHE_TTL_S:
            return cached[0]
        with self._uow.begin() as tx:
            device = tx.devices.get(device_id)
        if device is None:
            raise InvalidInput("metrics of a device not enrolled", code="monitor.report.device")
        if len(self._models) >= MODEL_CACHE_MAX:
            self._models.clear()
        self._models[device_id] = (device.model, now)
        return device.model

    def decode(self, device_id: str, payload: bytes, *, now: datetime) -> MetricsRecord:
        """Check one report (see :func:`~trustfleet.monitoring.report.decode_report`).

        Raises:
            InvalidInput: ``monitor.report.*``.
        """
        if len(payload) > self._max_bytes:  # before any store read
            raise InvalidInput("metrics report too large", code="monitor.report.size")
        return decode_report(
            payload,
            device_id=device_id,
            model=self.model(device_id),
            now=now,
            max_bytes=self._max_bytes,
            max_set_members=MAX_SET_MEMBERS,
            max_past_s=self._max_past_s,
            max_future_s=self._max_future_s,
            max_member_chars=MAX_SET_MEMBER_CHARS,
        )

    def store(self, records: Sequence[MetricsRecord], *, now: datetime) -> MetricsOutcome:
        """Store decoded windows in one transaction; isolate any the store refuses.

        Raises:
            Unavailable: The store is down (nothing was stored; do not acknowledge).
        """
        outcome = MetricsOutcome()
        if not records:
            return outcome
        try:
            with self._uow.begin() as tx:
                outcome.stored = tx.monitor_metrics.add_many(records, received_at=now)
            return outcome
        except Unavailable:
            raise
        except TrustFleetError:
            logger.info("a metrics batch was refused; storing its %d windows alone", len(records))
        for record in records:
            try:
                with self._uow.begin() as tx:
                    outcome.stored += tx.monitor_metrics.add_many([record], received_at=now)
            except Unavailable:
                raise
            except TrustFleetError as exc:
                self._models.pop(record.device_id, None)
                outcome.rejected.append((record.device_id, exc.code or "monitor.report.store"))
        return outcome


def apply_metrics_retention(uow: UnitOfWork, *, now: datetime, retention_days: int) -> int:
    """Drop metrics windows received more than ``retention_days`` before ``now``.

    Returns:
        How many windows went.
    """
    with uow.begin() as tx:
        gone = tx.monitor_metrics.delete_before(now - timedelta(days=retention_days))
    if gone:
        logger.info("metrics retention: %d windows expired", gone)
    return gone
