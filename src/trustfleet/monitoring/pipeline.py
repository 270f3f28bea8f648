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
from typing import Final

from trustfleet.monitoring import _checks
from trustfleet.monitoring._baseline import BaselineParams, Score, update_and_score
from trustfleet.monitoring._config import DetectorConfig
from trustfleet.monitoring._model import CohortModel, Outlier
from trustfleet.monitoring._setlearning import SETS, SetLearning
from trustfleet.monitoring._state import (
    DEVICE_TRACKED,
    RATIO,
    SERVICE_TRACKED,
    Cohort,
    Device,
    floors_for,
    log_values,
)
from trustfleet.monitoring.records import Finding, MetricsRecord
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
    "monitor.volume.sustained",
    "monitor.metric.sustained",
    "monitor.model.outlier",
)
"""Every kind of finding the pipeline raises (docs/monitoring.md#detection)."""

_EMPTY: Final[frozenset[str]] = frozenset()
_DEV_NAMES: Final = (*DEVICE_TRACKED, RATIO)


class FleetDetector(SetLearning):
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
        self._log_sustained_ratio = math.log(config.sustained_ratio)
        self._log_drift_ratio = math.log(config.drift_ratio)
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

    def _device_rules(
        self, rec: MetricsRecord, dev: Device, rules: ModelRules
    ) -> tuple[list[Finding], frozenset[str], float, int]:
        """Rules and watched files of a device window; its remote ports, churn, file changes."""
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
            rec.numbers, sets, ports, rules, device_id=rec.device_id, at=rec.end,
            window=rec.interval_s,
        )  # fmt: skip
        changes = 0
        files = sets.get("watched-files")
        if files is not None and files != dev.files_seen:
            dev.files_seen = files
            found = _checks.file_changes(files, dev.files, rules)
            changes = len(found)
            if found and rules.watched_immutable:
                out.append(self._file_finding(rec, found, rules))
        return out, ports, churn, changes

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
        out, ports, churn, changes = self._device_rules(rec, dev, rules)
        xs = log_values(rec.numbers, DEVICE_TRACKED)
        bo, bi = xs[0], xs[1]
        xs.append(bo - bi if bo is not None and bi is not None else None)
        score = update_and_score(
            xs,
            self._slot(rec, t),
            cohort.season,
            dev.level,
            self._dev_params,
            hot_z=self.config.z_cohort,
        )
        new = self._sets(rec, sets, ports, dev, cohort, learning=learning)
        counts = [float(len(new.get(n, ()))) for n, _, _ in SETS]
        features = score.device_z
        features += [counts[0], counts[1], counts[2] + counts[3], counts[4], float(changes)]
        features.append(round(churn * 4, 3))
        if learning:
            self._learn(cohort.model, dev, cohort, t, features)
            return out
        self._beacons(rec, t, dev, sets, out)
        self._novelty_findings(rec, dev, new, out)
        hits = self._baseline_hits(score, xs, _DEV_NAMES)
        sustained = self._sustained(score, xs, dev, t, rec.interval_s)
        if hits:
            out.append(self._baseline_finding(rec, hits, exfil_hint=bool(counts[0])))
        elif sustained:
            out.append(_checks.sustained_finding(rec, sustained))
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
        score = update_and_score(
            xs,
            self._slot(rec, t),
            cohort.svc_season,
            dev.svc_level,
            self._svc_params,
            hot_z=self.config.z_cohort,
        )
        sources = rec.sets.get("svc-source-addresses", _EMPTY)
        new = self._learn_or_new("svc-source-addresses", sources, dev, cohort, learning)
        features = score.device_z
        features.append(float(len(new)))
        if learning:
            self._learn(cohort.svc_model, dev, cohort, t, features)
            return out
        hits = self._baseline_hits(score, xs, SERVICE_TRACKED)
        if hits:
            out.append(self._baseline_finding(rec, hits, exfil_hint=False))
        if self.config.service_model and cohort.svc_model.fitted:
            self._queue(cohort.svc_model, rec, features, t)
        return out

    def _slot(self, rec: MetricsRecord, t: float) -> int:
        """The hour-of-day slot of a window (by its middle)."""
        return int((t - rec.interval_s / 2) // self._slot_s) % self._slots

    def _learn(
        self, model: CohortModel, dev: Device, cohort: Cohort, t: float, features: list[float]
    ) -> None:
        """Teach the cohort's model a learning window (past a device's first quarter)."""
        if t - dev.first >= self.config.learning_s / 4 and not cohort.fitted:
            model.learn(features)

    def _baseline_hits(
        self, score: Score, xs: list[float | None], names: tuple[str, ...]
    ) -> dict[str, dict[str, float]]:
        config = self.config
        return _checks.baseline_findings(
            score,
            xs,
            names,
            z_device=config.z_device,
            z_joint=config.z_joint,
            z_cohort_alone=config.z_cohort_alone,
            min_log_ratio=self._log_min_ratio,
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

    def _sustained(
        self, score: Score, xs: list[float | None], dev: Device, t: float, interval_s: int
    ) -> dict[str, dict[str, float]]:
        """The metrics that have been above their device's baseline (by ``z_sustained`` spreads
        and ``sustained_ratio``) in every window for ``sustained_s`` (raised once per run)."""
        above: dict[int, tuple[float, float, float]] = {}
        floor, z_min, streaks = self._log_sustained_ratio, self.config.z_sustained, dev.streaks
        zs, level, ref = score.device_z, dev.level.mean, self._reference(dev)
        for i, r in enumerate(score.lift):
            x, z = xs[i], zs[i]
            if x is None:
                continue
            # A run starts well above the device's baseline and lasts while the metric stays
            # sustained_ratio times its expected value (the baseline's spread grows with it);
            # or the metric is drift_ratio times the device's slow reference level.
            drift = r + level[i] - ref[i]
            if (r >= floor and (z > z_min or i in streaks)) or drift >= self._log_drift_ratio:
                above[i] = (x, x - r, z)
        due: dict[str, dict[str, float]] = {}
        for i in [i for i in streaks if i not in above]:
            del streaks[i]
        for i, (x, exp, dz) in above.items():
            began = streaks.setdefault(i, t - interval_s)
            if t - began >= self.config.sustained_s:
                streaks[i] = math.inf  # raised: quiet until the run ends
                due[_DEV_NAMES[i]] = _checks.sustained_evidence(x, exp, dz, t - began)
        return due

    def _reference(self, dev: Device) -> list[float]:
        """The device's reference level: its level when learning ended, then followed slowly."""
        ref, level, a = dev.reference, dev.level.mean, self.config.reference_alpha
        if not ref:
            ref.extend(level)
        else:
            for i, m in enumerate(level):
                ref[i] += a * (m - ref[i])
        return ref

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
