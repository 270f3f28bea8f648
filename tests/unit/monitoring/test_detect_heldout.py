"""The held-out scenarios of tests/vectors/monitoring (attack classes the built-in scenarios do
not have: a miner, DNS tunnelling, lateral movement, a LAN scan, a reverse shell, a slow ramp of
bytes out) meet issue 13's targets too, on the same short runs as the built-in ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.monitoring_scenarios import assert_meets_targets, short_run
from trustfleet.monitoring.scenario import load_scenario

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "monitoring"
FILES = sorted(VECTORS.glob("*.toml"))


def test_there_are_held_out_scenarios() -> None:
    assert len(FILES) >= 7


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_held_out_scenario_meets_the_targets(path: Path) -> None:
    scenario = load_scenario(path.read_text(), source=str(path))
    assert_meets_targets(short_run(scenario))
