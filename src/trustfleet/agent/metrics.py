"""Device metrics for security monitoring: collectors and the periodic report.

A :class:`MetricsCollector` reads one window of the device's metrics
(:class:`~trustfleet.monitoring.records.MetricsRecord`): :class:`ProcCollector` from Linux
``/proc`` (and an auth log, and watched files), :class:`ScenarioCollector` from a simulated
device's scenario (:class:`trustfleet.monitoring.scenario.DeviceBehaviour`). A
:class:`MetricsReporter` asks its collector every ``[monitoring] interval_s`` and encodes the
window as a Device Defender report (:func:`~trustfleet.monitoring.report.encode_report`),
trimmed to the wire's bounds, for the agent to publish on ``tf/v1/d/<id>/metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from trustfleet.agent._proc_collector import AUTH_FAILURE_MARKERS, ProcCollector, ProcLimits
from trustfleet.agent.platform.faults import Faults
from trustfleet.agent.settings import DeviceSettings
from trustfleet.errors import Config, InvalidInput, TrustFleetError
from trustfleet.fileio import read_bounded
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.report import encode_report
from trustfleet.wire import MAX_METRICS_REPORT_BYTES, MAX_SET_MEMBER_CHARS, MAX_SET_MEMBERS

__all__ = [
    "AUTH_FAILURE_MARKERS",
    "MetricsCollector",
    "MetricsReporter",
    "ProcCollector",
    "ProcLimits",
    "ScenarioCollector",
    "bounded_record",
    "metrics_reporter",
]

logger = logging.getLogger(__name__)

_MAX_SCENARIO_BYTES = 1 << 20
"""The largest scenario file a simulated device reads."""


class MetricsCollector(Protocol):
    """Reads the metrics of the window that ends at ``end``."""

    def collect(self, end: datetime, interval_s: int) -> MetricsRecord:
        """One window of the device's metrics (``source="device"``)."""
        ...


class ScenarioCollector:
    """A simulated device's metrics, following a scenario (the simulation's collector).

    Args:
        behaviour: H2's :class:`trustfleet.monitoring.scenario.DeviceBehaviour` (anything
            with ``record(end, interval_s) -> MetricsRecord``).
        device_id: The device (the records carry it).
        model: Its model in the inventory.
    """

    def __init__(self, behaviour: _Behaviour, *, device_id: str, model: str) -> None:
        self._behaviour = behaviour
        self.device_id, self.model = device_id, model

    @classmethod
    def from_scenario(
        cls, source: str, *, device_id: str, model: str, profile: str, device_index: int,
        devices: int, seed: int, start: datetime,
    ) -> ScenarioCollector:  # fmt: skip
        """Follow the scenario in file ``source`` (or the built-in scenario of that name).

        Raises:
            Config: The scenario cannot be read or is invalid (code ``agent.scenario``).
        """
        # Only a simulated device needs the scenario engine (and numpy): imported here. It ships
        # with the server distribution, not trustfleet-agent (ADR 0020).
        try:
            from trustfleet.monitoring.scenario import (  # noqa: PLC0415
                DeviceBehaviour,
                resolve_scenario,
            )
        except ImportError as exc:
            raise Config(
                f"metrics scenario {source[:80]!r}: the scenario engine is not installed",
                hint="scenarios are for simulated devices; install the 'trustfleet' distribution",
                code="agent.scenario",
            ) from exc

        path = Path(source)
        try:
            if path.is_file():
                data = read_bounded(path, max_bytes=_MAX_SCENARIO_BYTES)
                if data is None:
                    raise InvalidInput(f"larger than {_MAX_SCENARIO_BYTES} bytes")
                scenario = resolve_scenario(data.decode("utf-8"), read_file=str(path))
            else:
                scenario = resolve_scenario(source, read_file=None)
            behaviour = DeviceBehaviour(
                scenario, device_index=device_index, device_id=device_id,
                model=profile or model, seed=seed, start=start, devices=devices,
            )  # fmt: skip
        except (OSError, UnicodeDecodeError, TrustFleetError) as exc:
            raise Config(
                f"metrics scenario {source[:80]!r}: {exc}",
                hint="see docs/monitoring.md (scenarios)",
                code="agent.scenario",
            ) from exc
        return cls(behaviour, device_id=device_id, model=model)

    def collect(self, end: datetime, interval_s: int) -> MetricsRecord:
        """The scenario's window ending at ``end`` (device view)."""
        record = self._behaviour.record(end, interval_s)
        return replace(record, device_id=self.device_id, model=self.model)


class _Behaviour(Protocol):
    def record(self, end: datetime, interval_s: int) -> MetricsRecord: ...


def bounded_record(record: MetricsRecord, *, max_members: int, max_chars: int) -> MetricsRecord:
    """``record`` with each set cut to its first ``max_members`` (sorted) members of at most
    ``max_chars`` characters (what the service accepts; docs/mqtt.md)."""
    sets = {
        name: frozenset(sorted(m for m in members if len(m) <= max_chars)[:max_members])
        for name, members in record.sets.items()
    }
    return replace(record, sets=sets)


class MetricsReporter:
    """Every ``interval_s``, one encoded report of the window that just ended.

    Windows end at ``start + k * interval_s`` (k = 1, 2, …) on the agent's clock; a late
    agent skips to the current window rather than reporting the missed ones.

    Args:
        collector: Where the windows come from.
        interval_s: The window.
        start: The wall-clock time windows count from.
        start_mono: The monotonic time at ``start``.
        max_bytes: Bound on a report (sets are cut until it fits).
    """

    def __init__(
        self, collector: MetricsCollector, *, interval_s: int, start: datetime,
        start_mono: float, max_bytes: int = MAX_METRICS_REPORT_BYTES,
    ) -> None:  # fmt: skip
        self.collector, self.interval_s, self.max_bytes = collector, interval_s, max_bytes
        self._start, self._start_mono, self._k = start, start_mono, 0

    def next_due(self) -> float:
        """The monotonic time of the next report."""
        return self._start_mono + (self._k + 1) * self.interval_s

    def due(self, mono: float) -> bytes | None:
        """The report of the window that ended, if one did since the last call."""
        k = int((mono - self._start_mono) // self.interval_s)
        if k <= self._k:
            return None
        self._k = k
        end = self._start + timedelta(seconds=k * self.interval_s)
        try:
            record = self.collector.collect(end, self.interval_s)
        except (OSError, ValueError, TrustFleetError) as exc:
            logger.warning("metrics collection failed: %s", exc)
            return None
        return self.encode(record)

    def encode(self, record: MetricsRecord) -> bytes | None:
        """The report of ``record``, its sets cut until it fits ``max_bytes``."""
        members = MAX_SET_MEMBERS
        while True:
            small = bounded_record(record, max_members=members, max_chars=MAX_SET_MEMBER_CHARS)
            payload = encode_report(small, report_id=int(record.end.timestamp()))
            if len(payload) <= self.max_bytes:
                return payload
            if members == 0:
                logger.warning("a metrics report does not fit %d bytes", self.max_bytes)
                return None
            members //= 2


def metrics_reporter(
    settings: DeviceSettings, *, faults: Faults, now: Callable[[], datetime]
) -> MetricsReporter | None:
    """The agent's reporter per ``[monitoring]`` (None when disabled).

    A simulated device whose ``faults.json`` names a ``metrics_scenario`` follows it; any
    other device reads ``/proc``.

    Raises:
        Config: The scenario cannot be read.
    """
    section = settings.monitoring
    if not section.enabled:
        return None
    start, device = now(), settings.device
    collector: MetricsCollector
    scenario = faults.metrics_scenario
    if scenario is not None:
        collector = ScenarioCollector.from_scenario(
            scenario.source, device_id=device.id, model=device.model, profile=scenario.profile,
            device_index=scenario.device_index, devices=scenario.devices, seed=scenario.seed,
            start=start,
        )  # fmt: skip
    else:
        collector = ProcCollector(
            device_id=device.id,
            model=device.model,
            watched_files=[settings.path(p) for p in section.watched_files],
            auth_log=settings.path(section.auth_log) if section.auth_log else None,
        )
    return MetricsReporter(
        collector, interval_s=section.interval_s, start=start, start_mono=time.monotonic()
    )
