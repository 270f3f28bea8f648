"""Issue 13's targets on every built-in scenario (short runs; the benchmark runs long ones).

Each run is 32 devices for 62 simulated hours (attack onsets fall between 30 and 60 h; the
learning period is 24 h, so about 1,200 normal device-hours each): recall >= 0.95 on every
attack class and at most 1 false alarm per 1,000 normal device-hours.
"""

from __future__ import annotations

import pytest

from support.monitoring_scenarios import assert_meets_targets, short_run
from trustfleet.monitoring.scenario import builtin_scenarios, load_scenario

DEVICES = 32
HOURS = 62.0


@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_builtin_scenario_meets_the_targets(name: str) -> None:
    scenario = load_scenario(builtin_scenarios()[name], source=name)
    assert_meets_targets(short_run(scenario, devices=DEVICES, hours=HOURS))
