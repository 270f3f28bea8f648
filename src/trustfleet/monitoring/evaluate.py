"""Measure a detector against a scenario: recall and time to detect per attack class, false alarms.

The scenario's records are fed to the detector in simulated time (as fast as it scores them).
An attacked device counts as detected when the detector reports any finding about it from the
attack's onset to its end plus a grace of two windows; time to detect is from the onset to that
first finding. False alarms are alerts (findings deduplicated by :class:`AlertBook`) after the
learning period on devices outside their attack spans (plus grace), per 1,000 device-hours of
that normal time.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from trustfleet.monitoring.alerts import AlertBook
from trustfleet.monitoring.records import Detector, Finding, MetricsRecord
from trustfleet.monitoring.scenario import (
    DEFAULT_START,
    AttackSpan,
    ModelProfile,
    Scenario,
    fleet_plan,
    generate,
    ground_truth,
)

__all__ = [
    "FALSE_ALARM_TARGET",
    "RECALL_TARGET",
    "ClassResult",
    "Evaluation",
    "evaluate",
]

RECALL_TARGET: Final = 0.95
"""Issue 13: at least this recall on every attack class."""
FALSE_ALARM_TARGET: Final = 1.0
"""Issue 13: at most this many false alarms per 1,000 device-hours of normal time."""
GRACE_WINDOWS: Final = 2
"""Findings this many windows after an attack's end still count as detecting it."""
_PROGRESS_EVERY: Final = 5_000

Progress = Callable[[int, int], None]
"""Called with (records done, records in all) now and then, and at the end."""


@dataclass(frozen=True)
class ClassResult:
    """How a detector did on one attack class.

    Attributes:
        attack_class: The class.
        attacked: Attacked devices in the run.
        detected: Those with a finding during the attack (+ grace).
        recall: ``detected / attacked`` (None when no device was attacked in the run).
        ttd_median_s: Median time to detect, simulated seconds (None: nothing detected).
        ttd_p95_s: 95th percentile (nearest rank) of the time to detect.
        first_kinds: Kinds of the first finding on each detected device, with their counts.
    """

    attack_class: str
    attacked: int
    detected: int
    recall: float | None
    ttd_median_s: float | None
    ttd_p95_s: float | None
    first_kinds: Mapping[str, int] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        """Whether the recall target is met (False when no device was attacked)."""
        return self.recall is not None and self.recall >= RECALL_TARGET


@dataclass(frozen=True)
class Evaluation:
    """The result of one evaluation run."""

    scenario: str
    devices: int
    hours: float
    seed: int
    learning_hours: float
    records: int
    findings: int
    alerts: int
    false_alarms: int
    normal_device_hours: float
    classes: tuple[ClassResult, ...]
    elapsed_s: float
    false_alarm_kinds: Mapping[str, int] = field(default_factory=dict)
    """False alarms by finding kind (what to tune)."""

    @property
    def false_alarms_per_1000h(self) -> float:
        """False alarms per 1,000 device-hours of normal time after learning."""
        if self.normal_device_hours <= 0:
            return 0.0
        return self.false_alarms * 1000.0 / self.normal_device_hours

    @property
    def records_per_s(self) -> float:
        """Records generated and scored per second of wall-clock time."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def false_alarms_met(self) -> bool:
        """Whether the false-alarm target is met."""
        return self.false_alarms_per_1000h <= FALSE_ALARM_TARGET

    @property
    def targets_met(self) -> bool:
        """Every class's recall and the false-alarm rate meet their targets."""
        return self.false_alarms_met and all(c.met for c in self.classes)

    def to_json(self) -> dict[str, object]:
        """A JSON-able summary (what ``monitor evaluate --json`` prints)."""
        return {
            "scenario": self.scenario, "devices": self.devices, "hours": self.hours,
            "seed": self.seed, "learning_hours": self.learning_hours, "records": self.records,
            "findings": self.findings, "alerts": self.alerts, "false_alarms": self.false_alarms,
            "normal_device_hours": round(self.normal_device_hours, 3),
            "false_alarms_per_1000h": round(self.false_alarms_per_1000h, 4),
            "false_alarm_kinds": dict(self.false_alarm_kinds),
            "false_alarm_target": FALSE_ALARM_TARGET, "recall_target": RECALL_TARGET,
            "classes": [
                {"class": c.attack_class, "attacked": c.attacked, "detected": c.detected,
                 "recall": c.recall, "ttd_median_s": c.ttd_median_s, "ttd_p95_s": c.ttd_p95_s,
                 "first_kinds": dict(c.first_kinds), "met": c.met}
                for c in self.classes
            ],
            "targets_met": self.targets_met, "elapsed_s": round(self.elapsed_s, 3),
            "records_per_s": round(self.records_per_s, 1),
        }  # fmt: skip


class _Tally:
    """Findings against the ground truth, as they come."""

    def __init__(
        self, spans: list[AttackSpan], *, grace_s: float, learning_end: datetime, quiet_s: float
    ) -> None:
        self.by_device: dict[str, list[AttackSpan]] = {}
        for span in spans:
            self.by_device.setdefault(span.device_id, []).append(span)
        self.grace = timedelta(seconds=grace_s)
        self.learning_end = learning_end
        self.first: dict[AttackSpan, Finding] = {}
        self.fa_kinds: Counter[str] = Counter()
        self.book = AlertBook(quiet_s)
        self.findings = self.false_alarms = 0

    def add(self, finding: Finding) -> None:
        self.findings += 1
        span = next(
            (s for s in self.by_device.get(finding.device_id, ())
             if s.start < finding.at <= s.end + self.grace),
            None,
        )  # fmt: skip
        if span is not None and (span not in self.first or finding.at < self.first[span].at):
            self.first[span] = finding
        if finding.at < self.learning_end:
            return
        if self.book.add(finding) and span is None:
            self.false_alarms += 1
            self.fa_kinds[finding.kind] += 1


def evaluate(
    scenario: Scenario, *, detector: Detector, devices: int, hours: float, seed: int,
    start: datetime = DEFAULT_START, learning_hours: float | None = None, quiet_s: float = 3600.0,
    progress: Progress | None = None,
) -> Evaluation:  # fmt: skip
    """Run the scenario through the detector in simulated time and score what it found.

    Args:
        scenario: The scenario.
        detector: The detector under test (fresh: it learns from the run's first hours). If it
            has a ``flush()`` returning findings (one that scores in batches), it is called at
            the end of the run.
        devices: Fleet size.
        hours: Simulated time.
        seed: Makes the run reproducible.
        start: Aware start of simulated time.
        learning_hours: Findings before this are not false alarms (default: the scenario's).
        quiet_s: Findings of one kind on one device within this join one alert.
        progress: Optional ``(done, total)`` callback.

    Returns:
        The evaluation.

    Raises:
        InvalidInput: sizes out of bounds.
    """
    learn_h = scenario.learning_hours if learning_hours is None else learning_hours
    spans = ground_truth(scenario, devices=devices, hours=hours, seed=seed, start=start)
    grace_s = GRACE_WINDOWS * scenario.interval_s
    learning_end = start + timedelta(hours=learn_h)
    tally = _Tally(spans, grace_s=grace_s, learning_end=learning_end, quiet_s=quiet_s)
    total = _record_count(scenario, devices=devices, hours=hours, seed=seed)
    began = time.perf_counter()
    records = generate(scenario, devices=devices, hours=hours, seed=seed, start=start)
    done = _score(records, detector, tally, total=total, progress=progress)
    elapsed = time.perf_counter() - began
    end_of_run = start + timedelta(hours=hours)
    return Evaluation(
        scenario=scenario.name, devices=devices, hours=hours, seed=seed, learning_hours=learn_h,
        records=done, findings=tally.findings, alerts=tally.book.alerts,
        false_alarms=tally.false_alarms,
        normal_device_hours=_normal_hours(spans, devices=devices, learning_end=learning_end,
                                          end=end_of_run, grace_s=grace_s),
        classes=_classes(scenario, spans, tally.first), elapsed_s=elapsed,
        false_alarm_kinds=dict(tally.fa_kinds.most_common()),
    )  # fmt: skip


def _score(
    records: Iterable[MetricsRecord], detector: Detector, tally: _Tally, *, total: int,
    progress: Progress | None,
) -> int:  # fmt: skip
    done = 0
    observe, add = detector.observe, tally.add
    for record in records:
        for finding in observe(record):
            add(finding)
        done += 1
        if progress is not None and done % _PROGRESS_EVERY == 0:
            progress(done, total)
    flush = getattr(detector, "flush", None)  # a detector that scores in batches (FleetDetector)
    if callable(flush):
        for finding in flush():
            add(finding)
    if progress is not None:
        progress(done, total)
    return done


def _record_count(scenario: Scenario, *, devices: int, hours: float, seed: int) -> int:
    windows = int(hours * 3600 // scenario.interval_s)
    with_service = {m.name for m in scenario.models if _has_service(m)}
    plan = fleet_plan(scenario, devices=devices, seed=seed)
    return windows * sum(2 if p.model in with_service else 1 for p in plan)


def _has_service(model: ModelProfile) -> bool:
    names = [p.metric for p in model.numbers] + [p.metric for p in model.sets]
    return any(name.startswith("svc-") for name in names)


def _normal_hours(
    spans: list[AttackSpan], *, devices: int, learning_end: datetime, end: datetime,
    grace_s: float,
) -> float:  # fmt: skip
    """Device-hours after learning, less each attacked device's span (+ grace) in that time."""
    per_device = max((end - learning_end).total_seconds(), 0.0)
    total = per_device * devices
    by_device: dict[str, list[tuple[datetime, datetime]]] = {}
    for s in spans:
        lo = max(s.start, learning_end)
        hi = min(s.end + timedelta(seconds=grace_s), end)
        if hi > lo:
            by_device.setdefault(s.device_id, []).append((lo, hi))
    for intervals in by_device.values():
        intervals.sort()
        cur_lo, cur_hi = intervals[0]
        for lo, hi in intervals[1:]:
            if lo > cur_hi:
                total -= (cur_hi - cur_lo).total_seconds()
                cur_lo, cur_hi = lo, hi
            else:
                cur_hi = max(cur_hi, hi)
        total -= (cur_hi - cur_lo).total_seconds()
    return total / 3600.0


def _classes(
    scenario: Scenario, spans: list[AttackSpan], first: dict[AttackSpan, Finding]
) -> tuple[ClassResult, ...]:
    out = []
    for klass in scenario.attack_classes:
        mine = [s for s in spans if s.attack_class == klass]
        ttds = sorted((first[s].at - s.start).total_seconds() for s in mine if s in first)
        kinds = Counter(first[s].kind for s in mine if s in first)
        out.append(
            ClassResult(
                attack_class=klass,
                attacked=len(mine),
                detected=len(ttds),
                recall=len(ttds) / len(mine) if mine else None,
                ttd_median_s=statistics.median(ttds) if ttds else None,
                ttd_p95_s=ttds[max(math.ceil(0.95 * len(ttds)) - 1, 0)] if ttds else None,
                first_kinds=dict(kinds.most_common()),
            )
        )
    return tuple(out)
