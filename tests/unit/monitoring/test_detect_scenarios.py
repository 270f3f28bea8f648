"""Issue 13's targets on every built-in scenario (short runs; the benchmark runs long ones).

Each run is 32 devices for 62 simulated hours (attack onsets fall between 30 and 60 h; the
learning period is 24 h, so about 1,200 normal device-hours each): recall >= 0.95 on every
attack class and at most 1 false alarm per 1,000 normal device-hours.
"""

from __future__ import annotations

import pytest

from trustfleet.monitoring.evaluate import FALSE_ALARM_TARGET, RECALL_TARGET, evaluate
from trustfleet.monitoring.pipeline import DetectorConfig, FleetDetector
from trustfleet.monitoring.scenario import builtin_scenarios, load_scenario

DEVICES = 32
HOURS = 62.0


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenario_meets_the_targets(name: str) -> None:
    scenario = load_scenario(builtin_scenarios()[name], source=name)
    detector = FleetDetector(DetectorConfig(learning_s=scenario.learning_hours * 3600))
    result = evaluate(scenario, detector=detector, devices=DEVICES, hours=HOURS, seed=13)
    assert result.false_alarms_per_1000h <= FALSE_ALARM_TARGET, result.to_json()
    for klass in result.classes:
        assert klass.attacked > 0, klass
        assert klass.recall is not None and klass.recall >= RECALL_TARGET, result.to_json()
