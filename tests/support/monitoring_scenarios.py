"""Small scenarios for the monitoring unit tests (flat, noiseless: effects are exact)."""

from __future__ import annotations

from datetime import UTC, datetime

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
