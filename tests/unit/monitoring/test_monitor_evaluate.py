"""The evaluator's arithmetic, on detectors whose answers are known exactly."""

from __future__ import annotations

from datetime import timedelta

from support.monitoring_scenarios import START, small
from trustfleet.monitoring.evaluate import Evaluation, evaluate
from trustfleet.monitoring.records import Finding, MetricsRecord
from trustfleet.monitoring.scenario import AttackSpan, ground_truth

DEVICES, HOURS, SEED = 10, 12, 4
WINDOWS_AFTER_LEARNING = (12 - 2) * 12 + 1  # ends at 2 h, 2 h 5 min, …, 12 h
WINDOWS_IN_SPAN = (2 * 3600 + 600) // 300  # ends after 4 h up to 6 h 10 min (grace 2 windows)
NORMAL_HOURS = DEVICES * 10 - 2 * (2 + 600 / 3600)


class Oracle:
    """Flags exactly the windows that overlap an attack."""

    def __init__(self, spans: list[AttackSpan]) -> None:
        self.spans = spans

    def observe(self, record: MetricsRecord) -> list[Finding]:
        start = record.end - timedelta(seconds=record.interval_s)
        hit = any(
            s.device_id == record.device_id and record.end > s.start and start < s.end
            for s in self.spans
        )
        return (
            [Finding(record.device_id, "monitor.o", "high", "rule", record.end, "o")] if hit else []
        )


class Everything:
    """Flags every window."""

    def observe(self, record: MetricsRecord) -> list[Finding]:
        return [Finding(record.device_id, "monitor.all", "low", "rule", record.end, "all")]


def _evaluate(detector: object, **kw: object) -> Evaluation:
    return evaluate(
        small(),
        detector=detector,
        devices=DEVICES,
        hours=HOURS,
        seed=SEED,
        start=START,
        **kw,  # type: ignore[arg-type]
    )


def test_an_oracle_has_full_recall_no_false_alarms_and_one_window_to_detect() -> None:
    spans = ground_truth(small(), devices=DEVICES, hours=HOURS, seed=SEED, start=START)
    result = _evaluate(Oracle(spans))
    (x,) = result.classes
    assert (x.attack_class, x.attacked, x.detected, x.recall) == ("x", 2, 2, 1.0)
    assert x.ttd_median_s == x.ttd_p95_s == 300.0
    assert x.first_kinds == {"monitor.o": 2}
    assert result.false_alarms == 0 and result.false_alarms_per_1000h == 0
    assert result.targets_met
    assert result.records == DEVICES * HOURS * 12
    assert abs(result.normal_device_hours - NORMAL_HOURS) < 1e-9


def test_flagging_everything_is_one_false_alarm_per_device_with_dedup() -> None:
    result = _evaluate(Everything())
    assert result.classes[0].recall == 1.0
    assert result.classes[0].ttd_median_s == 300.0
    assert result.false_alarms == DEVICES  # one open alert per device from the end of learning
    assert result.false_alarm_kinds == {"monitor.all": DEVICES}
    assert abs(result.false_alarms_per_1000h - DEVICES * 1000 / NORMAL_HOURS) < 1e-9
    assert not result.targets_met


def test_flagging_everything_without_dedup_counts_every_normal_window() -> None:
    result = _evaluate(Everything(), quiet_s=0)
    assert result.false_alarms == DEVICES * WINDOWS_AFTER_LEARNING - 2 * WINDOWS_IN_SPAN
    assert result.alerts == DEVICES * WINDOWS_AFTER_LEARNING
    assert result.findings == DEVICES * HOURS * 12


def test_a_silent_detector_misses_everything() -> None:
    result = _evaluate(Oracle([]))
    assert result.classes[0].recall == 0.0 and result.classes[0].ttd_median_s is None
    assert not result.targets_met and result.false_alarms_met


def test_a_run_too_short_for_the_attack_reports_no_recall() -> None:
    result = evaluate(small(), detector=Everything(), devices=4, hours=3, seed=1, start=START)
    assert result.classes[0].attacked == 0 and result.classes[0].recall is None
    assert not result.classes[0].met


def test_progress_reaches_the_total_and_json_has_the_figures() -> None:
    seen: list[tuple[int, int]] = []
    result = _evaluate(Oracle([]), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (result.records, result.records)
    doc = result.to_json()
    assert doc["classes"][0]["class"] == "x"  # type: ignore[index]
    assert doc["false_alarm_target"] == 1.0 and doc["recall_target"] == 0.95
