"""A served fleet whose agents' metrics follow a scenario (``trustfleet sim fleet``).

The demo's first stages make the fleet (a home, a release, devices, ``server run``, enrollment);
then every device's metrics follow the scenario, reported every ``interval_s``, until each has
``windows`` windows in the store; what the monitor made of them is read from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from trustfleet.errors import InvalidInput, Unavailable
from trustfleet.sim.fleet import SimFleet
from trustfleet.sim.scenarios import DEMO

__all__ = ["SETUP_STAGES", "ScenarioRun", "run_scenario_fleet"]

SETUP_STAGES: Final = ("init", "release", "provision", "serve", "enroll")
_SECONDS_PER_WINDOW: Final = 3.0
"""Bound on waiting, per window expected (agents restart, then report)."""


@dataclass
class ScenarioRun:
    """What a scenario run left: windows stored and alerts raised, per device."""

    scenario: str
    devices: int
    windows: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, list[str]] = field(default_factory=dict)


def run_scenario_fleet(
    fleet: SimFleet, scenario: str, *, windows: int, interval_s: int = 1, seed: int = 0
) -> ScenarioRun:
    """Make and serve the fleet, have its metrics follow ``scenario``, wait for ``windows``.

    Args:
        fleet: A fleet with no server yet (its ``size`` devices are made).
        scenario: A scenario file or a built-in scenario's name.
        windows: How many windows each device reports before the run ends.
        interval_s: The agents' report interval.
        seed: The scenario's seed.

    Raises:
        Unavailable: A setup stage failed, or the windows did not arrive in time.
        InvalidInput: ``windows`` is out of range.
    """
    if not 1 <= windows <= 3600:
        raise InvalidInput("windows must be 1..3600", code="sim.windows")
    if Path(scenario).is_file():
        scenario = str(Path(scenario).resolve())
    stages = {stage.name: stage for stage in DEMO}
    for name in SETUP_STAGES:
        result = stages[name](fleet)
        if not result.ok:
            raise Unavailable(f"setup stage {name} failed: {result.reason}", code="sim.setup")
    ids = fleet.device_ids
    since = fleet.metrics_counts()
    fleet.follow_scenario(scenario, ids, seed=seed, interval_s=interval_s)
    timeout_s = 30.0 + windows * interval_s * _SECONDS_PER_WINDOW
    fleet.wait_metrics(ids, windows=windows, since=since, timeout_s=timeout_s)
    return ScenarioRun(
        scenario=scenario,
        devices=len(ids),
        windows=fleet.metrics_counts(),
        alerts=fleet.alert_kinds(),
    )
