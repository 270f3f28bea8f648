"""``trustfleet monitor``: a short evaluation through the CLI, the built-in list, a rules check."""

from __future__ import annotations

import json
from pathlib import Path

from support.server import run_cli
from trustfleet.monitoring.rules import DEFAULT_RULES_TOML

# Two attacked devices of the built-in models, a short learning period, a 6-hour run.
SHORT = """
[scenario]
name = "short"
include = "normal"
devices = 12
hours = 6
learning_hours = 2

[[attacks]]
class = "firmware-tampering"
devices = 2
onset_h = [3, 4]
duration_h = 1

[[attacks.effects]]
metric = "watched-files"
op = "members"
generator = "file-hash"
values = ["/usr/bin/tf-agent"]
"""


def test_evaluate_json_reports_each_class_and_the_false_alarm_rate(tmp_path: Path) -> None:
    scenario = tmp_path / "short.toml"
    scenario.write_text(SHORT)
    result = run_cli("monitor", "evaluate", "--scenario", scenario, "--seed", "3", "--json")
    assert result.returncode in (0, 1), result.stderr  # 1: a target missed, said in --help
    doc = json.loads(result.stdout)
    assert (doc["scenario"], doc["devices"], doc["hours"], doc["learning_hours"]) == (
        "short", 12, 6, 2
    )  # fmt: skip
    (tampering,) = doc["classes"]
    assert tampering["class"] == "firmware-tampering" and tampering["attacked"] == 2
    assert tampering["recall"] == 1.0  # a watched file's hash changed: the rules see it
    assert 0 < tampering["ttd_median_s"] <= 600
    assert doc["records"] == 12 * 6 * 12 * 2  # device and service windows of 5 minutes
    assert doc["normal_device_hours"] > 0 and doc["false_alarms_per_1000h"] >= 0
    assert (result.returncode == 0) == doc["targets_met"]


def test_evaluate_help_says_when_it_fails() -> None:
    result = run_cli("monitor", "evaluate", "--help")
    assert result.returncode == 0
    assert "1 when one is missed" in " ".join(result.stdout.split())


def test_scenarios_json_lists_the_builtins() -> None:
    result = run_cli("monitor", "scenarios", "--json")
    assert result.returncode == 0, result.stderr
    names = {s["name"]: s for s in json.loads(result.stdout)["scenarios"]}
    assert {"normal", "all-attacks", "c2-beaconing"} <= set(names)
    assert names["c2-beaconing"]["classes"] == ["c2-beaconing"]


def test_rules_check_accepts_the_builtin_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(DEFAULT_RULES_TOML)
    result = run_cli("monitor", "rules", "check", rules, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
