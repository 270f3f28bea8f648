"""The fleet's detection pipeline: records in, findings out (pure, in memory, bounded).

For each window: static rules (thresholds, allow-lists, suspicious remote ports, watched
files), then the statistical baselines (a device's level against its cohort's hour-of-day
profile) and set learning (destinations, remote ports, listening ports, executables new to
the device and to its cohort), beaconing, and the cohort's IsolationForest, which scores the
windows that pass its gate in batches. Nothing is raised while a device (baselines, sets) or
its cohort (model) learns, except by the rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from trustfleet.monitoring import _checks
from trustfleet.monitoring._baseline import BaselineParams, update_and_score
from trustfleet.monitoring._model import CohortModel, ModelParams, Outlier
from trustfleet.monitoring._state import (
    DEVICE_TRACKED,
    RATIO,
    SERVICE_TRACKED,
    Cohort,
    Device,
    floors_for,
    log_values,
)
from trustfleet.monitoring.records import Finding, MetricsRecord, Severity
from trustfleet.monitoring.rules import ModelRules, RuleSet, default_rules

__all__ = ["FINDING_KINDS", "DetectorConfig", "FleetDetector"]

FINDING_KINDS: Final[tuple[str, ...]] = (
    "monitor.threshold.exceeded",
    "monitor.port.not_allowed",
    "monitor.executable.not_allowed",
    "monitor.destination.not_allowed",
    "monitor.destination.suspicious_port",
    "monitor.file.changed",
    "monitor.destination.new",
    "monitor.destination.scan",
    "monitor.port.new",
    "monitor.executable.new",
    "monitor.beacon",
    "monitor.volume.high",
    "monitor.metric.high",
    "monitor.model.outlier",
)
"""Every kind of finding the pipeline raises (docs/monitoring.md#detection)."""

_EMPTY: Final[frozenset[str]] = frozenset()
_PREFIXES: Final = "destination-networks"
_DEV_NAMES: Final = (*DEVICE_TRACKED, RATIO)
_RATIO_AT: Final = len(DEVICE_TRACKED)
_SETS: Final[tuple[tuple[str, str, Severity], ...]] = (
    ("destination-ip-addresses", "monitor.destination.new", "medium"),
    ("remote-ports", "monitor.destination.new", "medium"),
    ("listening-tcp-ports", "monitor.port.new", "high"),
    ("listening-udp-ports", "monitor.port.new", "high"),
    ("executables", "monitor.executable.new", "high"),
)


@dataclass(frozen=True)
class DetectorConfig:
    """The detection pipeline's settings (H4 builds it from ``[monitoring]``).

    Attributes:
        learning_s: How long a device (baselines, sets) and a cohort (model) learn first.
        z_device: A metric counts when above the device's expected value by this many spreads…
        z_cohort: …and above the cohort's hour-of-day profile by this many of its spreads…
        z_cohort_alone: Or far above the cohort's profile (and somewhat above the device's).
        min_ratio: …and at least this many times the expected value.
        z_joint: Two or more metrics of a window above their device's baselines by this many
            spreads (and min_ratio) count together.
        cohort_known_devices: A member seen by this many devices of the cohort while they
            learned is not new to any of them.
        new_destination_windows: A lone new destination is raised once seen in this many
            windows (two or more new ones in a window are raised at once).
        known_prefixes: A new address in a /24 (/64) the device or its cohort used while
            learning is not new (CDN and pool churn).
        scan_destinations: New destinations in one window that make a scan (high).
        beacon_windows: Regular windows with a new destination that make a beacon.
        beacon_max_cv: The most irregularity (gap stddev / mean) a beacon may have.
        max_devices: Devices kept in memory (the least recently seen go first).
        max_members: Members remembered per set per device (and flagged ones).
        model: Whether the IsolationForest runs.
        service_model: Whether it also scores service windows (off: their sparse counts made
            it raise false alarms on the built-in scenarios; baselines and rules cover them).
        model_params: Its constants.
        model_batch: Queued windows that trigger a batch scoring.
        model_max_delay_s: The longest (simulated) delay before a queued window is scored.
        device_alpha: EWMA weight in a device's level.
        cohort_alpha: EWMA weight in a cohort's time-of-day profile.
        season_slot_s: The time-of-day profile's resolution (1800: half hours; divides a day).
    """

    learning_s: float = 24 * 3600.0
    z_device: float = 6.0
    z_cohort: float = 3.0
    z_cohort_alone: float = 12.0
    z_joint: float = 4.0
    min_ratio: float = 3.0
    cohort_known_devices: int = 2
    new_destination_windows: int = 2
    known_prefixes: bool = True
    scan_destinations: int = 8
    beacon_windows: int = 6
    beacon_max_cv: float = 0.1
    max_devices: int = 100_000
    max_members: int = 512
    model: bool = True
    service_model: bool = False
    model_params: ModelParams = field(default_factory=ModelParams)
    model_batch: int = 512
    model_max_delay_s: float = 900.0
    device_alpha: float = 0.02
    cohort_alpha: float = 0.01
    season_slot_s: int = 1800


def _network(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6, written in full groups) an address belongs to."""
    if ":" in address:
        return ":".join(address.split(":")[:4])
    return address.rpartition(".")[0]


class FleetDetector:
    """The whole pipeline for a fleet; implements ``Detector``.

    Args:
        config: The settings.
        rules: The rules (default: the built-in rules).
    """

    def __init__(self, config: DetectorConfig | None = None, *, rules: RuleSet | None = None):
        self.config = config = config or DetectorConfig()
        self.rules = rules or default_rules()
        self._devices: dict[str, Device] = {}
        self._cohorts: dict[str, Cohort] = {}
        self._rules_cache: dict[str, ModelRules] = {}
        self._pending: dict[int, float] = {}  # id(model) -> oldest queued window time
        self._log_min_ratio = math.log(config.min_ratio)
        self._slot_s = float(config.season_slot_s)
        self._slots = max(1, round(86_400 / config.season_slot_s))
        self._dev_params = BaselineParams(
            config.device_alpha, config.cohort_alpha, 4.0, floors_for(_DEV_NAMES)
        )
        self._svc_params = BaselineParams(
            config.device_alpha, config.cohort_alpha, 4.0, floors_for(SERVICE_TRACKED)
        )

    # -- the Detector protocol -------------------------------------------------------------

    def observe(self, record: MetricsRecord) -> list[Finding]:
        """Score one window (and learn from it); model findings may come a batch later."""
        out = self._observe(record)
        if self._pending:
            self._flush_due(record.end.timestamp(), out)
        return out

    def observe_many(self, records: Iterable[MetricsRecord]) -> list[Finding]:
        """Score many windows, then every queued model window; returns all findings."""
        out: list[Finding] = []
        last = 0.0
        for record in records:
            out.extend(self._observe(record))
            last = record.end.timestamp()
            if self._pending:
                self._flush_due(last, out)
        out.extend(self.flush())
        return out

    def flush(self) -> list[Finding]:
        """Score every window the model has queued."""
        out: list[Finding] = []
        for cohort in self._cohorts.values():
            for model in (cohort.model, cohort.svc_model):
                if model.pending():
                    out.extend(self._model_findings(model.score()))
        self._pending.clear()
        return out

    def state_bytes(self) -> int:
        """Approximate memory of the detection state (devices and cohorts), in bytes."""
        total = sum(d.nbytes() + 100 for d in self._devices.values())
        return total + sum(c.nbytes() for c in self._cohorts.values())

    def devices(self) -> int:
        """Devices whose state is kept."""
        return len(self._devices)

    # -- one record --------------------------------------------------------------------------

    def _state(self, record: MetricsRecord, t: float) -> tuple[Device, Cohort, ModelRules]:
        dev = self._devices.get(record.device_id)
        if dev is None or dev.model != record.model:
            if len(self._devices) >= self.config.max_devices:
                self._evict()
            dev = self._devices[record.device_id] = Device(record.model, t)
        dev.last = t
        cohort = self._cohorts.get(record.model)
        if cohort is None:
            params = self.config.model_params
            cohort = self._cohorts[record.model] = Cohort(
                record.model, t, params, slots=self._slots
            )
        rules = self._rules_cache.get(record.model)
        if rules is None:
            rules = self._rules_cache[record.model] = self.rules.for_model(record.model)
        return dev, cohort, rules

    def _evict(self) -> None:
        keep = int(self.config.max_devices * 0.9)
        by_age = sorted(self._devices.items(), key=lambda kv: kv[1].last, reverse=True)
        self._devices = dict(by_age[:keep])

    def _observe(self, record: MetricsRecord) -> list[Finding]:
        t = record.end.timestamp()
        dev, cohort, rules = self._state(record, t)
        if not cohort.fitted and t - cohort.first >= self.config.learning_s:
            cohort.fitted = True
            if self.config.model:
                cohort.model.fit()
                cohort.svc_model.fit()
        learning = t - dev.first < self.config.learning_s
        if record.source == "service":
            return self._service(record, t, dev, cohort, rules, learning=learning)
        return self._device(record, t, dev, cohort, rules, learning=learning)

    def _device(
        self,
        rec: MetricsRecord,
        t: float,
        dev: Device,
        cohort: Cohort,
        rules: ModelRules,
        *,
        learning: bool,
    ) -> list[Finding]:
        sets = rec.sets
        endpoints = sets.get("remote-endpoints", _EMPTY)
        if endpoints != dev.prev_endpoints:
            ports = frozenset(e.rpartition(":")[2] for e in endpoints)
            union = len(endpoints | dev.prev_endpoints)
            churn = len(endpoints ^ dev.prev_endpoints) / union if union else 0.0
            dev.prev_endpoints, dev.prev_ports = endpoints, ports
        else:
            ports, churn = dev.prev_ports, 0.0
        out = _checks.rule_findings(
            rec.numbers,
            sets,
            ports,
            rules,
            device_id=rec.device_id,
            at=rec.end,
            window=rec.interval_s,
        )
        changes = 0
        files = sets.get("watched-files")
        if files is not None and files != dev.files_seen:
            dev.files_seen = files
            found = _checks.file_changes(files, dev.files, rules)
            changes = len(found)
            if found and rules.watched_immutable:
                out.append(self._file_finding(rec, found, rules))
        xs = log_values(rec.numbers, DEVICE_TRACKED)
        bo, bi = xs[0], xs[1]
        xs.append(bo - bi if bo is not None and bi is not None else None)
        hour = int((t - rec.interval_s / 2) // self._slot_s) % self._slots
        score = update_and_score(
            xs, hour, cohort.season, dev.level, self._dev_params, hot_z=self.config.z_cohort
        )
        new = self._sets(rec, sets, ports, dev, cohort, learning=learning)
        counts = [float(len(new.get(n, ()))) for n, _, _ in _SETS]
        features = score.device_z
        features += [counts[0], counts[1], counts[2] + counts[3], counts[4], float(changes)]
        features.append(round(churn * 4, 3))
        if learning:
            if t - dev.first >= self.config.learning_s / 4 and not cohort.fitted:
                cohort.model.learn(features)
            return out
        self._beacons(rec, t, dev, sets, out)
        self._novelty_findings(rec, dev, new, out)
        hits = _checks.baseline_findings(
            score,
            xs,
            _DEV_NAMES,
            z_device=self.config.z_device,
            z_joint=self.config.z_joint,
            z_cohort_alone=self.config.z_cohort_alone,
            min_log_ratio=self._log_min_ratio,
        )
        if hits:
            out.append(self._baseline_finding(rec, hits, exfil_hint=bool(counts[0])))
        if cohort.model.fitted:
            self._queue(cohort.model, rec, features, t)
        return out

    def _service(
        self,
        rec: MetricsRecord,
        t: float,
        dev: Device,
        cohort: Cohort,
        rules: ModelRules,
        *,
        learning: bool,
    ) -> list[Finding]:
        out = _checks.rule_findings(
            rec.numbers,
            rec.sets,
            _EMPTY,
            rules,
            device_id=rec.device_id,
            at=rec.end,
            window=rec.interval_s,
        )
        xs = log_values(rec.numbers, SERVICE_TRACKED)
        hour = int((t - rec.interval_s / 2) // self._slot_s) % self._slots
        score = update_and_score(
            xs, hour, cohort.svc_season, dev.svc_level, self._svc_params, hot_z=self.config.z_cohort
        )
        sources = rec.sets.get("svc-source-addresses", _EMPTY)
        new = self._learn_or_new("svc-source-addresses", sources, dev, cohort, learning)
        features = score.device_z
        features.append(float(len(new)))
        if learning:
            if t - dev.first >= self.config.learning_s / 4 and not cohort.fitted:
                cohort.svc_model.learn(features)
            return out
        hits = _checks.baseline_findings(
            score,
            xs,
            SERVICE_TRACKED,
            z_device=self.config.z_device,
            z_joint=self.config.z_joint,
            z_cohort_alone=self.config.z_cohort_alone,
            min_log_ratio=self._log_min_ratio,
        )
        if hits:
            out.append(self._baseline_finding(rec, hits, exfil_hint=False))
        if self.config.service_model and cohort.svc_model.fitted:
            self._queue(cohort.svc_model, rec, features, t)
        return out

    # -- sets ----------------------------------------------------------------------------------

    def _learn_or_new(
        self, name: str, members: frozenset[str], dev: Device, cohort: Cohort, learning: bool
    ) -> list[str]:
        known = dev.known.get(name)
        if known is None:
            known = dev.known[name] = set()
        if learning:
            fresh = members - known
            if fresh:
                cap = self.config.max_members
                counts = cohort.members.setdefault(name, {})
                for m in fresh:
                    if len(known) < cap:
                        known.add(m)
                    if m in counts or len(counts) < cap * 16:
                        counts[m] = counts.get(m, 0) + 1
            return []
        flagged = dev.flagged.setdefault(name, set())
        return _checks.novelty(
            members,
            known,
            flagged,
            cohort.members.get(name, {}),
            cohort_min=self.config.cohort_known_devices,
        )

    def _sets(
        self,
        rec: MetricsRecord,
        sets: Any,
        ports: frozenset[str],
        dev: Device,
        cohort: Cohort,
        *,
        learning: bool,
    ) -> dict[str, list[str]]:
        new: dict[str, list[str]] = {}
        for name, _, _ in _SETS:
            members = ports if name == "remote-ports" else sets.get(name)
            if members is None:
                continue
            found = self._learn_or_new(name, members, dev, cohort, learning)
            if name == "destination-ip-addresses" and self.config.known_prefixes:
                found = self._prefix_filter(members, found, dev, cohort, learning=learning)
            if found:
                new[name] = found
        return new

    def _prefix_filter(
        self,
        members: frozenset[str],
        found: list[str],
        dev: Device,
        cohort: Cohort,
        *,
        learning: bool,
    ) -> list[str]:
        """Learn destination networks (/24, /64) while learning; later, a new address in a
        network the device or its cohort used is not new (CDN and pool churn)."""
        if learning:
            nets = frozenset(_network(m) for m in members)
            self._learn_or_new(_PREFIXES, nets, dev, cohort, learning)
            return found
        known = dev.known.get(_PREFIXES, set())
        counts = cohort.members.get(_PREFIXES, {})
        return [m for m in found if (n := _network(m)) not in known and n not in counts]

    def _novelty_findings(
        self, rec: MetricsRecord, dev: Device, new: dict[str, list[str]], out: list[Finding]
    ) -> None:
        dests = new.get("destination-ip-addresses")
        if dests and len(dests) == 1:  # a lone one counts once it comes back
            seen = dev.novel.get(dests[0], ())
            if len(seen) < self.config.new_destination_windows:
                del new["destination-ip-addresses"]
        if "destination-ip-addresses" not in new:
            new.pop("remote-ports", None)  # remote ports are evidence of a destination finding
        by_kind: dict[str, dict[str, list[str]]] = {}
        severity: dict[str, Severity] = {}
        cap = self.config.max_members
        for name, kind, sev in _SETS:
            if name in new:
                by_kind.setdefault(kind, {})[name] = new[name]
                severity[kind] = sev
                flagged = dev.flagged[name]
                if len(flagged) < cap:
                    flagged.update(new[name])
        if len(new.get("destination-ip-addresses", ())) >= self.config.scan_destinations:
            by_kind["monitor.destination.scan"] = by_kind.pop("monitor.destination.new")
            severity["monitor.destination.scan"] = "high"
        for kind, metrics in by_kind.items():
            text = "; ".join(f"{len(v)} new {k} ({', '.join(v[:3])})" for k, v in metrics.items())
            evidence = {
                "metrics": {k: v[:20] for k, v in metrics.items()},
                "counts": {k: len(v) for k, v in metrics.items()},
                "window_s": rec.interval_s,
            }
            out.append(
                Finding(rec.device_id, kind, severity[kind], "baseline", rec.end, text, evidence)
            )

    def _beacons(
        self, rec: MetricsRecord, t: float, dev: Device, sets: Any, out: list[Finding]
    ) -> None:
        dests = sets.get("destination-ip-addresses")
        if not dests:
            return
        found = _checks.beacon_check(
            dests,
            dev.known.get("destination-ip-addresses", set()),
            dev.novel,
            t,
            windows=self.config.beacon_windows,
            max_cv=self.config.beacon_max_cv,
            max_tracked=32,
        )
        for dest, period, count in found:
            if dest in dev.beacons:
                continue
            if len(dev.beacons) < self.config.max_members:
                dev.beacons.add(dest)
            out.append(
                Finding(
                    rec.device_id,
                    "monitor.beacon",
                    "high",
                    "baseline",
                    rec.end,
                    f"regular connections to new destination {dest} every ~{period:.0f} s "
                    f"({count} windows)",
                    {
                        "metrics": {
                            "destination": dest,
                            "period_s": round(period, 1),
                            "windows": count,
                        },
                        "window_s": rec.interval_s,
                    },
                )
            )

    # -- findings -----------------------------------------------------------------------------

    def _file_finding(
        self, rec: MetricsRecord, found: list[tuple[str, str | None, str]], rules: ModelRules
    ) -> Finding:
        paths = [p for p, _, _ in found]
        return Finding(
            rec.device_id,
            "monitor.file.changed",
            rules.watched_severity,
            "rule",
            rec.end,
            f"watched file(s) changed: {', '.join(paths[:5])}",
            {
                "metrics": {
                    "watched-files": [
                        {"path": p, "was": old, "now": new} for p, old, new in found[:20]
                    ]
                },
                "window_s": rec.interval_s,
            },
        )

    def _baseline_finding(
        self, rec: MetricsRecord, hits: dict[str, dict[str, float]], *, exfil_hint: bool
    ) -> Finding:
        kind, severity = _checks.baseline_kind(hits, exfil_hint=exfil_hint)
        text = ", ".join(
            f"{m} {v['value']:g} (usually ~{v['expected']:g}, z {v['z']:g})"
            for m, v in hits.items()
        )
        return Finding(
            rec.device_id,
            kind,
            severity,
            "baseline",
            rec.end,
            text,
            {"metrics": hits, "window_s": rec.interval_s, "new_destination": exfil_hint},
        )

    def _queue(self, model: CohortModel, rec: MetricsRecord, vec: list[float], t: float) -> None:
        if model.queue((rec.device_id, rec.end, rec.source), vec):
            self._pending.setdefault(id(model), t)

    def _flush_due(self, now: float, out: list[Finding]) -> None:
        batch, delay = self.config.model_batch, self.config.model_max_delay_s
        for cohort in self._cohorts.values():
            for model in (cohort.model, cohort.svc_model):
                oldest = self._pending.get(id(model))
                if oldest is None:
                    continue
                if model.pending() >= batch or now - oldest >= delay:
                    del self._pending[id(model)]
                    out.extend(self._model_findings(model.score()))

    def _model_findings(self, outliers: list[Outlier]) -> list[Finding]:
        out = []
        for o in outliers:
            device_id, at, source = o.key
            names = ", ".join(f"{k} ({v:+g} IQR)" for k, v in o.features.items())
            out.append(
                Finding(
                    device_id,
                    "monitor.model.outlier",
                    "medium",
                    "model",
                    at,
                    f"{source} window unlike its model's: {names}",
                    {
                        "features": o.features,
                        "score": round(o.score, 4),
                        "threshold": round(o.threshold, 4),
                        "source": source,
                    },
                )
            )
        return out
