"""Issue 13 §5: the detection pipeline's speed, memory and accuracy.

Prints (and ``--json`` writes as one object):

* records scored per second of CPU time (``time.process_time``: one core, whatever else the
  machine runs) through the whole pipeline: H4's ``decode_report`` of
  each device window (service windows are built by the service, not decoded), then features,
  rules, baselines, set learning and the cohort forest (``observe_many`` in batches of
  ``--batch``, as the monitor worker reads ``monitor_metrics``), on a fleet of the built-in
  ``normal`` scenario; decode alone and detection alone too;
* the detector's state per device: its own estimate (``state_bytes``) and what tracemalloc
  measures on a smaller fleet;
* recall per attack class, time to detect and false alarms per 1,000 device-hours on long runs
  of every built-in scenario (H2's ``evaluate``), and of the held-out scenarios in
  tests/vectors/monitoring/ (never tuned on);
* ``--compare-models``: IsolationForest against river's HalfSpaceTrees (if installed) on the
  same feature vectors (ADR 0018).

Usage: ``python benchmarks/monitor.py [--devices 2000] [--hours 30] [--eval-devices 100]
[--eval-hours 72] [--skip-eval] [--compare-models] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from trustfleet.monitoring.evaluate import evaluate
from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector
from trustfleet.monitoring.records import MetricsRecord
from trustfleet.monitoring.report import decode_report, encode_report
from trustfleet.monitoring.scenario import (
    DEFAULT_START,
    builtin_scenarios,
    generate,
    load_scenario,
)
from trustfleet.wire import MAX_METRICS_REPORT_BYTES, MAX_SET_MEMBER_CHARS, MAX_SET_MEMBERS

HELD_OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "monitoring"


def _fleet(devices: int, hours: float, seed: int) -> list[tuple[bytes | None, MetricsRecord]]:
    scenario = load_scenario(builtin_scenarios()["normal"], source="normal")
    out: list[tuple[bytes | None, MetricsRecord]] = []
    for i, rec in enumerate(
        generate(scenario, devices=devices, hours=hours, seed=seed, start=DEFAULT_START)
    ):
        payload = encode_report(rec, report_id=i) if rec.source == "device" else None
        out.append((payload, rec))
    return out


def _decode(payload: bytes, rec: MetricsRecord) -> MetricsRecord:
    return decode_report(
        payload, device_id=rec.device_id, model=rec.model, now=rec.end,
        max_bytes=MAX_METRICS_REPORT_BYTES, max_set_members=MAX_SET_MEMBERS,
        max_member_chars=MAX_SET_MEMBER_CHARS, max_past_s=86_400, max_future_s=300,
    )  # fmt: skip


def throughput(devices: int, hours: float, *, batch: int, seed: int) -> dict[str, Any]:
    """Records/s through decode + detection, decode alone, detection alone (one process)."""
    items = _fleet(devices, hours, seed)
    began = time.process_time()
    decoded = [(_decode(p, r) if p is not None else r) for p, r in items]
    decode_s = time.process_time() - began
    device_windows = sum(1 for p, _ in items if p is not None)

    def run() -> tuple[FleetDetector, float]:
        detector = FleetDetector(DetectorConfig())
        began = time.process_time()
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            detector.observe_many([(_decode(p, r) if p is not None else r) for p, r in chunk])
        return detector, time.process_time() - began

    detector, whole_s = run()
    detect_only = FleetDetector(DetectorConfig())
    began = time.process_time()
    for start in range(0, len(decoded), batch):
        detect_only.observe_many(decoded[start : start + batch])
    detect_s = time.process_time() - began
    return {
        "devices": devices, "hours": hours, "records": len(items),
        "device_windows_decoded": device_windows, "batch": batch,
        "records_per_s": round(len(items) / whole_s),
        "decode_per_s": round(device_windows / decode_s),
        "detect_records_per_s": round(len(items) / detect_s),
        "state_bytes_per_device": detector.state_bytes() // max(detector.devices(), 1),
    }  # fmt: skip


def measured_state(devices: int, hours: float, *, seed: int) -> dict[str, Any]:
    """Bytes per device that tracemalloc sees the detector hold (records excluded)."""
    records = [r for _, r in _fleet(devices, hours, seed)]
    detector = FleetDetector(DetectorConfig(learning_s=hours * 3600 / 2))
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    detector.observe_many(records)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename"))
    return {
        "devices": devices,
        "hours": hours,
        "tracemalloc_bytes_per_device": held // devices,
        "state_bytes_per_device": detector.state_bytes() // devices,
    }


def accuracy(texts: dict[str, str], *, devices: int, hours: float, seed: int) -> list[Any]:
    """evaluate() on each scenario: per-class recall, TTD, false alarms per 1,000 h."""
    out = []
    for name, text in texts.items():
        scenario = load_scenario(text, source=name)
        detector = FleetDetector(DetectorConfig(learning_s=scenario.learning_hours * 3600))
        result = evaluate(scenario, detector=detector, devices=devices, hours=hours, seed=seed)
        out.append(result.to_json())
    return out


def _print(figures: dict[str, Any]) -> None:
    t = figures["throughput"]
    print(
        f"throughput: {t['records_per_s']:,} records/s/core (decode + detection, "
        f"{t['records']:,} records, {t['devices']} devices x {t['hours']} h); decode alone "
        f"{t['decode_per_s']:,}/s, detection alone {t['detect_records_per_s']:,}/s"
    )
    m = figures["memory"]
    print(
        f"state per device: {t['state_bytes_per_device']:,} B (estimate, {t['devices']} devices);"
        f" tracemalloc {m['tracemalloc_bytes_per_device']:,} B ({m['devices']} devices)"
    )
    for group in ("builtin", "held_out"):
        for ev in figures.get(group, []):
            classes = " ".join(
                f"{c['class']} {c['detected']}/{c['attacked']} ttd~{c['ttd_median_s']}s"
                for c in ev["classes"]
            )
            print(
                f"{group} {ev['scenario']}: FA {ev['false_alarms_per_1000h']}/1000 h "
                f"({ev['false_alarms']} in {ev['normal_device_hours']:.0f} h) {classes}"
            )
    if "models" in figures:
        print("models:", json.dumps(figures["models"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--hours", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--eval-devices", type=int, default=100)
    parser.add_argument("--eval-hours", type=float, default=72.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--compare-models", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {
        "throughput": throughput(args.devices, args.hours, batch=args.batch, seed=args.seed),
        "memory": measured_state(200, 30.0, seed=args.seed),
    }
    if not args.skip_eval:
        size = {"devices": args.eval_devices, "hours": args.eval_hours, "seed": args.seed}
        figures["builtin"] = accuracy(builtin_scenarios(), **size)
        held = {p.stem: p.read_text() for p in sorted(HELD_OUT.glob("*.toml"))}
        figures["held_out"] = accuracy(held, **size)
    if args.compare_models:
        from _modelcompare import compare

        figures["models"] = compare(devices=60, hours=72.0, seed=args.seed)
    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
    else:
        _print(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
