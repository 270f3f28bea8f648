"""IsolationForest against river's HalfSpaceTrees on the pipeline's own feature vectors (ADR 0018).

Runs the detection pipeline on the built-in ``all-attacks`` scenario and taps the device-window
feature vectors the cohort models see: those of the learning window train both detectors, those
after it are scored. A window is an attack window when its device is under attack (ground
truth) of a class whose windows the device metrics show (the service-side classes and
one-window tampering are left out of both sides). Figures: ROC AUC, recall of attack windows
at a 0.1 % false-positive rate on normal windows, and CPU seconds to train and to score.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from trustfleet.monitoring import _model
from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector
from trustfleet.monitoring.scenario import (
    DEFAULT_START,
    builtin_scenarios,
    generate,
    ground_truth,
    load_scenario,
)

DEVICE_CLASSES = frozenset(
    {"burst-exfiltration", "botnet-scanning", "backdoor-listener", "c2-beaconing"}
)
"""Attack classes whose every window shows in the device's own metrics."""


def _vectors(devices: int, hours: float, seed: int) -> tuple[Any, Any, Any]:
    scenario = load_scenario(builtin_scenarios()["all-attacks"], source="all-attacks")
    spans = ground_truth(scenario, devices=devices, hours=hours, seed=seed, start=DEFAULT_START)
    train: list[list[float]] = []
    scored: list[tuple[tuple[str, Any, str], list[float]]] = []
    learn, queue = _model.CohortModel.learn, _model.CohortModel.queue

    def tap_learn(self: Any, vector: list[float]) -> None:
        if self.names[0] == "z:all-bytes-out":
            train.append(list(vector))
        learn(self, vector)

    def tap_queue(self: Any, key: Any, vector: list[float]) -> bool:
        if key[2] == "device":
            scored.append((key, list(vector)))
        return queue(self, key, vector)

    _model.CohortModel.learn, _model.CohortModel.queue = tap_learn, tap_queue  # type: ignore[method-assign]
    try:
        detector = FleetDetector(DetectorConfig(learning_s=scenario.learning_hours * 3600))
        detector.observe_many(
            generate(scenario, devices=devices, hours=hours, seed=seed, start=DEFAULT_START)
        )
    finally:
        _model.CohortModel.learn, _model.CohortModel.queue = learn, queue  # type: ignore[method-assign]
    rows, labels = [], []
    for key, vector in scored:
        classes = {
            s.attack_class for s in spans if s.device_id == key[0] and s.start <= key[1] <= s.end
        }
        if classes and not classes & DEVICE_CLASSES:
            continue  # an attack a device window cannot show (service side, one window)
        rows.append(vector)
        labels.append(bool(classes))
    return np.asarray(train), np.asarray(rows), np.asarray(labels)


def _figures(name: str, scores: Any, labels: Any, fit_s: float, score_s: float) -> dict[str, Any]:
    anomaly = -scores  # higher: more anomalous
    normal = np.sort(anomaly[~labels])
    cut = normal[int(len(normal) * 0.999)]
    return {
        "detector": name,
        "auc": round(float(roc_auc_score(labels, anomaly)), 4),
        "recall_at_0.1pct_fp": round(float((anomaly[labels] > cut).mean()), 4),
        "fit_cpu_s": round(fit_s, 3),
        "score_us_per_window": round(score_s / len(scores) * 1e6, 2),
    }


def compare(*, devices: int, hours: float, seed: int) -> dict[str, Any]:
    """The figures of ADR 0018 (river's only when river is installed)."""
    train, test, labels = _vectors(devices, hours, seed)
    out: dict[str, Any] = {"train_windows": len(train), "scored_windows": len(test),
                           "attack_windows": int(labels.sum())}  # fmt: skip
    t0 = time.process_time()
    forest = IsolationForest(n_estimators=64, max_samples=256, random_state=13).fit(train)
    packed = _model.PackedForest(forest)
    t1 = time.process_time()
    scores = packed.score_samples(test)
    t2 = time.process_time()
    out["isolation_forest"] = _figures("IsolationForest", scores, labels, t1 - t0, t2 - t1)
    try:
        from river import anomaly  # type: ignore[import-not-found]
    except ImportError:
        out["half_space_trees"] = "river not installed"
        return out
    names = [str(i) for i in range(train.shape[1])]
    low, high = train.min(axis=0), train.max(axis=0)
    limits = {
        n: (float(a), float(b) if b > a else float(a) + 1.0)
        for n, a, b in zip(names, low, high, strict=True)
    }
    hst = anomaly.HalfSpaceTrees(n_trees=25, height=8, window_size=250, limits=limits, seed=13)
    t0 = time.process_time()
    for row in train:
        hst.learn_one(dict(zip(names, row.tolist(), strict=True)))
    t1 = time.process_time()
    river_scores = np.asarray(
        [-hst.score_one(dict(zip(names, row.tolist(), strict=True))) for row in test]
    )
    t2 = time.process_time()
    out["half_space_trees"] = _figures("HalfSpaceTrees", river_scores, labels, t1 - t0, t2 - t1)
    return out
