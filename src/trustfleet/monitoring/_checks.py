"""The checks of one window: rules, watched files, set novelty, beaconing, baselines.

Each function returns findings (or appends them to a list) and touches only the state it is
given; the pipeline calls them in order for every record.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from trustfleet.monitoring._baseline import Score
from trustfleet.monitoring.records import Finding, MetricsRecord, Severity
from trustfleet.monitoring.rules import ModelRules

__all__ = [
    "baseline_findings",
    "beacon_check",
    "file_changes",
    "novelty",
    "rule_findings",
]

_EMPTY: Final[frozenset[str]] = frozenset()
_HIGH_METRICS: Final = frozenset(
    {"all-bytes-out", "all-packets-out", "out-in-ratio", "failed-logins", "svc-connect-refusals"}
)
_VOLUME: Final = frozenset(
    {"all-bytes-out", "all-bytes-in", "all-packets-out", "all-packets-in", "out-in-ratio"}
)


def _finding(
    device_id: str,
    kind: str,
    severity: Severity,
    *,
    at: datetime,
    summary: str,
    evidence: dict[str, Any],
) -> Finding:
    return Finding(device_id, kind, severity, "rule", at, summary, evidence)


def _thresholds(
    numbers: Mapping[str, float], rules: ModelRules, device_id: str, at: datetime, window: int
) -> list[Finding]:
    out = []
    for metric, rule in rules.thresholds.items():
        value = numbers.get(metric)
        if value is None:
            continue
        if rule.max is not None and value > rule.max:
            bound, word = rule.max, "above"
        elif rule.min is not None and value < rule.min:
            bound, word = rule.min, "below"
        else:
            continue
        out.append(
            _finding(
                device_id,
                "monitor.threshold.exceeded",
                rule.severity,
                at=at,
                summary=f"{metric} = {value:g} is {word} the rule's {bound:g}",
                evidence={
                    "metrics": {metric: {"value": value, "max": rule.max, "min": rule.min}},
                    "window_s": window,
                },
            )
        )
    return out


def rule_findings(
    numbers: Mapping[str, float],
    sets: Mapping[str, frozenset[str]],
    remote_ports: frozenset[str],
    rules: ModelRules,
    *,
    device_id: str,
    at: datetime,
    window: int,
) -> list[Finding]:
    """Static thresholds, allow-lists and always-suspicious remote ports."""
    out = _thresholds(numbers, rules, device_id, at, window) if rules.thresholds else []
    bad = remote_ports & rules.suspicious_remote_ports
    if bad:
        eps = sorted(e for e in sets.get("remote-endpoints", _EMPTY) if e.rpartition(":")[2] in bad)
        out.append(
            _finding(
                device_id,
                "monitor.destination.suspicious_port",
                rules.suspicious_severity,
                at=at,
                summary=f"{len(eps)} connection(s) to suspicious port(s) {'/'.join(sorted(bad))}",
                evidence={
                    "metrics": {"remote-endpoints": eps[:20], "count": len(eps)},
                    "window_s": window,
                },
            )
        )
    checks = (
        ("listening-tcp-ports", rules.listening_tcp_ports, "monitor.port.not_allowed"),
        ("listening-udp-ports", rules.listening_udp_ports, "monitor.port.not_allowed"),
        ("executables", rules.executables, "monitor.executable.not_allowed"),
    )
    for name, allowed, kind in checks:
        if allowed is None:
            continue
        extra = sets.get(name, _EMPTY) - allowed
        if extra:
            out.append(_not_allowed(device_id, kind, name, extra, at=at, window=window))
    if rules.destinations is not None:
        extra = frozenset(
            d
            for d in sets.get("destination-ip-addresses", _EMPTY)
            if not rules.destination_allowed(d)
        )
        if extra:
            kind = "monitor.destination.not_allowed"
            name = "destination-ip-addresses"
            out.append(_not_allowed(device_id, kind, name, extra, at=at, window=window))
    return out


def _not_allowed(
    device_id: str, kind: str, name: str, extra: frozenset[str], *, at: datetime, window: int
) -> Finding:
    members = sorted(extra)
    return _finding(
        device_id,
        kind,
        "high",
        at=at,
        summary=f"{name} not in the model's allow-list: {', '.join(members[:5])}",
        evidence={"metrics": {name: members[:20]}, "count": len(members), "window_s": window},
    )


def file_changes(
    current: frozenset[str], files: dict[str, str], rules: ModelRules
) -> list[tuple[str, str | None, str]]:
    """Compare the watched files to what was seen before; learn the new hashes.

    Returns:
        (path, old hash or None for a new path, new hash) of each change.
    """
    changes = []
    watched = rules.watched_paths
    first = not files
    for member in current:
        path, _, digest = member.rpartition("=")
        if not path or (watched and path not in watched):
            continue
        old = files.get(path)
        if old != digest:
            if not first:
                changes.append((path, old, digest))
            if len(files) < 1024 or old is not None:
                files[path] = digest
    return changes


def novelty(
    members: frozenset[str],
    known: set[str],
    flagged: set[str],
    cohort: Mapping[str, int],
    *,
    cohort_min: int,
) -> list[str]:
    """Members unknown to the device (learned or flagged before) and to its cohort."""
    new = members - known
    if not new:
        return []
    new -= flagged
    return sorted(m for m in new if cohort.get(m, 0) < cohort_min)


def beacon_check(
    dests: frozenset[str],
    known: set[str],
    novel: dict[str, list[float]],
    t: float,
    *,
    windows: int,
    max_cv: float,
    max_tracked: int,
) -> list[tuple[str, float, int]]:
    """Track post-learning destinations; return (destination, period s, count) of beacons.

    A beacon is a destination the device did not use while learning, seen in ``windows`` or
    more windows at regular intervals (coefficient of variation of the gaps ≤ ``max_cv``).
    """
    out = []
    for d in dests - known:
        times = novel.get(d)
        if times is None:
            if len(novel) >= max_tracked:
                oldest = min(novel, key=lambda k: novel[k][-1])
                del novel[oldest]
            novel[d] = times = []
        times.append(t)
        if len(times) > windows:
            del times[0]
        if len(times) == windows:
            gaps = [b - a for a, b in itertools.pairwise(times)]
            mean = sum(gaps) / len(gaps)
            var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
            if mean > 0 and math.sqrt(var) <= max_cv * mean:
                out.append((d, mean, len(times)))
    return out


def baseline_findings(
    score: Score,
    xs: list[float | None],
    names: tuple[str, ...],
    *,
    z_device: float,
    z_joint: float,
    z_cohort_alone: float,
    min_log_ratio: float,
) -> dict[str, dict[str, float]]:
    """The metrics of a window above both baselines, with their evidence.

    A metric counts when it is above its device's baseline by ``z_device`` spreads (and
    ``min_log_ratio``), or far above its cohort's profile (``z_cohort_alone``), or when two or
    more metrics are above their device's baselines by ``z_joint`` together. ``score.hot``
    holds the metrics above both baselines by the cohort threshold already.
    """
    chosen: list[tuple[int, float, float, float, float]] = []
    joint: list[tuple[int, float, float, float, float]] = []
    for hot in score.hot:
        i, dz, cz, exp, _ = hot
        x = xs[i]
        if x is None:
            continue
        big = x - exp >= min_log_ratio
        if (dz > z_device and big) or cz > z_cohort_alone:
            chosen.append(hot)
        elif dz > z_joint and big:
            joint.append(hot)
    if len(joint) + len(chosen) >= 2:
        chosen += joint
    hits: dict[str, dict[str, float]] = {}
    for i, dz, cz, exp, spread in chosen:
        x = xs[i]
        if x is None:  # not reached: hot metrics were reported
            continue
        top = exp + z_device * spread
        plain = names[i] != "out-in-ratio"
        hits[names[i]] = {
            "value": round(math.expm1(x) if plain else x, 3),
            "expected": round(math.expm1(exp) if plain else exp, 3),
            "upper": round(math.expm1(top) if plain else top, 3),
            "z": round(dz, 1),
            "cohort_z": round(cz, 1),
        }
    return hits


def baseline_kind(hits: Mapping[str, object], *, exfil_hint: bool) -> tuple[str, Severity]:
    """The kind and severity of a baseline finding from the metrics it names."""
    volume = any(m in _VOLUME for m in hits)
    high = any(m in _HIGH_METRICS for m in hits)
    kind = "monitor.volume.high" if volume else "monitor.metric.high"
    if high and exfil_hint:
        return kind, "critical" if "all-bytes-out" in hits else "high"
    return kind, "high" if high else "medium"


def sustained_evidence(x: float, exp: float, z: float, lasted_s: float) -> dict[str, float]:
    """The evidence of one metric in a sustained run (values out of log space)."""
    return {
        "value": round(math.expm1(x), 3),
        "expected": round(math.expm1(exp), 3),
        "z": round(z, 1),
        "lasted_s": round(lasted_s),
    }


def sustained_finding(rec: MetricsRecord, metrics: dict[str, dict[str, float]]) -> Finding:
    """``monitor.metric.sustained``: metrics above both baselines in every window for long."""
    text = ", ".join(
        f"{m} {v['value']:g} (usually ~{v['expected']:g}) for {v['lasted_s']:g} s"
        for m, v in metrics.items()
    )
    volume = any(m in _VOLUME for m in metrics)
    return Finding(
        rec.device_id,
        "monitor.volume.sustained" if volume else "monitor.metric.sustained",
        "high" if volume else "medium",
        "baseline",
        rec.end,
        "sustained: " + text,
        {"metrics": metrics, "window_s": rec.interval_s},
    )
