"""The detection pipeline on a small synthetic fleet and on hand-made windows."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import fleetkit as fk
import pytest

from trustfleet.monitoring import Finding, MetricsRecord
from trustfleet.monitoring.pipeline import FINDING_KINDS, DetectorConfig, FleetDetector
from trustfleet.monitoring.rules import DEFAULT_RULES_TOML, load_rules

LEARNING_S = 24 * 3600
ATTACKS = {
    1: (fk.exfiltration, 28, 2),
    2: (fk.scanning, 29, 2),
    3: (fk.backdoor, 30, 2),
    4: (fk.tamper, 31, 2),
    5: (fk.flood, 32, 2),
    7: (fk.backdoor, 2, 2),  # during learning
}


@pytest.fixture(scope="module")
def findings() -> dict[str, list[Finding]]:
    detector = FleetDetector(DetectorConfig(learning_s=LEARNING_S))
    by_device: dict[str, list[Finding]] = defaultdict(list)
    for f in detector.observe_many(fk.fleet(devices=20, hours=34, attacks=ATTACKS)):
        by_device[f.device_id].append(f)
    return by_device


def _kinds(found: list[Finding]) -> set[str]:
    return {f.kind for f in found}


def test_every_finding_has_a_stable_kind_and_evidence(findings: dict[str, list[Finding]]) -> None:
    for found in findings.values():
        for f in found:
            assert f.kind in FINDING_KINDS
            assert f.evidence and f.summary
            assert f.detector in ("rule", "baseline", "model")


def test_normal_devices_raise_nothing_after_learning(findings: dict[str, list[Finding]]) -> None:
    after = fk.START + timedelta(seconds=LEARNING_S)
    normal = [f for i in range(20) if i not in ATTACKS for f in findings[f"dev-{i:04d}"]]
    assert [f for f in normal if f.at >= after] == []


def test_exfiltration_is_high_volume_out(findings: dict[str, list[Finding]]) -> None:
    volume = [f for f in findings["dev-0001"] if f.kind == "monitor.volume.high"]
    assert volume
    assert "all-bytes-out" in volume[0].evidence["metrics"]
    assert volume[0].severity in ("high", "critical")
    assert volume[0].at >= fk.START + timedelta(hours=28)


def test_scanning_is_a_scan_to_suspicious_ports(findings: dict[str, list[Finding]]) -> None:
    kinds = _kinds(findings["dev-0002"])
    assert {"monitor.destination.scan", "monitor.destination.suspicious_port"} <= kinds
    rule = next(f for f in findings["dev-0002"] if f.kind.endswith("suspicious_port"))
    assert rule.detector == "rule" and rule.severity == "high"


def test_a_backdoor_is_a_new_port_and_a_new_executable_once(
    findings: dict[str, list[Finding]],
) -> None:
    found = findings["dev-0003"]
    assert [f.kind for f in found if f.kind.endswith(".new")].count("monitor.port.new") == 1
    exe = [f for f in found if f.kind == "monitor.executable.new"]
    assert len(exe) == 1
    assert exe[0].evidence["metrics"]["executables"] == [fk.sha("backdoor")]


def test_what_a_device_does_while_learning_is_learned(findings: dict[str, list[Finding]]) -> None:
    assert _kinds(findings["dev-0007"]) <= {"monitor.model.outlier"}


def test_a_changed_watched_file_is_critical(findings: dict[str, list[Finding]]) -> None:
    changed = [f for f in findings["dev-0004"] if f.kind == "monitor.file.changed"]
    assert changed and all(f.severity == "critical" for f in changed)
    first = changed[0].evidence["metrics"]["watched-files"][0]
    assert first == {"path": "/etc/passwd", "was": fk.sha("passwd"), "now": fk.sha("evil")}


def test_flooding_names_the_message_rate(findings: dict[str, list[Finding]]) -> None:
    metric = [f for f in findings["dev-0005"] if f.kind == "monitor.metric.high"]
    assert metric and "svc-messages-in" in metric[0].evidence["metrics"]
    entry = metric[0].evidence["metrics"]["svc-messages-in"]
    assert entry["value"] > entry["upper"] > entry["expected"]


def _window(
    i: int, dests: set[str], *, device: str = "d1", exes: frozenset[str] = fk.EXES
) -> MetricsRecord:
    return MetricsRecord(
        device_id=device,
        model="m",
        source="device",
        end=fk.START + timedelta(seconds=300 * i),
        interval_s=300,
        numbers={"all-bytes-out": 1000.0, "all-bytes-in": 1000.0},
        sets={
            "destination-ip-addresses": frozenset(dests),
            "remote-endpoints": frozenset(f"{d}:443" for d in dests),
            "executables": exes,
        },
    )


def _learned(detector: FleetDetector, windows: int = 20) -> None:
    for i in range(windows):
        assert detector.observe(_window(i, {"203.0.113.1", "198.51.100.7"})) == []


def test_set_learning_lone_destinations_pairs_and_known_networks() -> None:
    detector = FleetDetector(DetectorConfig(learning_s=3600, model=False))
    _learned(detector)
    base = {"203.0.113.1"}
    assert detector.observe(_window(20, base | {"192.0.2.50"})) == []  # once: not yet
    assert detector.observe(_window(21, base | {"198.51.100.99"})) == []  # a known /24
    [again] = detector.observe(_window(22, base | {"192.0.2.50"}))
    assert again.kind == "monitor.destination.new"
    assert again.evidence["metrics"]["destination-ip-addresses"] == ["192.0.2.50"]
    assert detector.observe(_window(23, base | {"192.0.2.50"})) == []  # reported once
    [pair] = detector.observe(_window(24, base | {"192.0.2.60", "192.0.2.61"}))
    assert pair.evidence["counts"]["destination-ip-addresses"] == 2


def test_a_regular_new_destination_is_a_beacon() -> None:
    detector = FleetDetector(DetectorConfig(learning_s=3600, model=False))
    _learned(detector)
    kinds = []
    for i in range(20, 40, 2):  # every other window: a 600 s period
        kinds += [f.kind for f in detector.observe(_window(i, {"203.0.113.1", "192.0.2.9"}))]
        kinds += [f.kind for f in detector.observe(_window(i + 1, {"203.0.113.1"}))]
    assert kinds.count("monitor.beacon") == 1
    assert kinds.count("monitor.destination.new") == 1


def test_allow_lists_and_thresholds_apply_from_the_first_window() -> None:
    text = DEFAULT_RULES_TOML + (
        '\n[models."m"]\nallow.destinations = ["203.0.113.0/24"]\n'
        f'allow.executables = ["{fk.sha("exe0")}"]\n'
    )
    detector = FleetDetector(rules=load_rules(text, source="r.toml"))
    found = detector.observe(_window(1, {"203.0.113.1", "192.0.2.1"}))
    kinds = {f.kind: f for f in found}
    assert set(kinds) == {"monitor.destination.not_allowed", "monitor.executable.not_allowed"}
    assert kinds["monitor.destination.not_allowed"].evidence["metrics"] == {
        "destination-ip-addresses": ["192.0.2.1"]
    }
    record = MetricsRecord("d2", "other", "device", fk.START, 300, {"failed-logins": 50.0}, {})
    [rule] = detector.observe(record)
    assert rule.kind == "monitor.threshold.exceeded" and rule.severity == "high"
    assert rule.evidence["metrics"]["failed-logins"]["max"] == 20


def test_the_same_input_gives_the_same_findings() -> None:
    def run() -> list[Finding]:
        detector = FleetDetector(DetectorConfig(learning_s=6 * 3600))
        return detector.observe_many(
            fk.fleet(devices=8, hours=10, attacks={1: (fk.exfiltration, 8, 1)})
        )

    first = run()
    assert first and first == run()


def test_state_is_bounded_per_device_and_in_devices() -> None:
    detector = FleetDetector(DetectorConfig(learning_s=3600, max_devices=10))
    detector.observe_many(fk.fleet(devices=25, hours=3))
    assert detector.devices() <= 10
    per_device = detector.state_bytes() / detector.devices()
    assert 1_000 < per_device < 100_000
