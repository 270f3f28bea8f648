"""Small scenarios for the monitoring unit tests (flat, noiseless: effects are exact)."""

from __future__ import annotations

from datetime import UTC, datetime

from trustfleet.monitoring.evaluate import (
    FALSE_ALARM_TARGET,
    RECALL_TARGET,
    Evaluation,
    evaluate,
)
from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector
from trustfleet.monitoring.scenario import Scenario, load_scenario

START = datetime(2026, 3, 2, tzinfo=UTC)

BASE = """
[scenario]
name = "t"
interval_s = 300
devices = 10
hours = 12
learning_hours = 2

[models.m1.numbers.all-bytes-out]
level = 1000
noise = "none"

[models.m1.sets.destination-ip-addresses]
members = ["192.0.2.10"]

[[attacks]]
class = "x"
devices = 2
onset_h = 4
duration_h = 2
effects = [{ metric = "all-bytes-out", op = "add", value = 500 }]
"""


def small(text: str = BASE) -> Scenario:
    """A scenario from text (the base by default)."""
    return load_scenario(text, source="test.toml")


def with_effects(effects: str, *, extra_models: str = "") -> Scenario:
    """The base scenario with other effects (a TOML array body) and more model tables."""
    text = BASE.replace(
        'effects = [{ metric = "all-bytes-out", op = "add", value = 500 }]',
        f"effects = [{effects}]",
    )
    return small(text + extra_models)


def short_run(scenario: Scenario, *, devices: int = 32, hours: float = 62.0) -> Evaluation:
    """The scenario's short run (seed 13) through a fresh detector learning for its hours."""
    detector = FleetDetector(DetectorConfig(learning_s=scenario.learning_hours * 3600))
    return evaluate(scenario, detector=detector, devices=devices, hours=hours, seed=13)


def assert_meets_targets(result: Evaluation) -> None:
    """Issue 13's targets: few false alarms, and every attack class attacked and recalled."""
    assert result.false_alarms_per_1000h <= FALSE_ALARM_TARGET, result.to_json()
    for klass in result.classes:
        assert klass.attacked > 0, klass
        assert klass.recall is not None and klass.recall >= RECALL_TARGET, result.to_json()
