"""monitor#0's loop on a real home and store: scored windows become alerts, the playbook
quarantines, and a restarted monitor replays its learning window without raising again."""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import tomli_w

from support.runtimes import home_runtime
from trustfleet.monitoring import MetricsRecord
from trustfleet.monitoring.rules import DEFAULT_RULES_TOML
from trustfleet.monitoring.scenario import DeviceBehaviour, load_scenario, resolve_scenario
from trustfleet.server.monitor_worker import CURSOR, MonitorWorker
from trustfleet.services.runtime import Runtime
from trustfleet.settings.monitoring import MonitoringSettings
from trustfleet.store.alert_records import AlertQuery

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL, PROFILE = "gw-live", "gw-x1"
THIEF = "dev-thief-001"
NORMAL = ("dev-norm-0001", "dev-norm-0002", "dev-norm-0003")
INTERVAL_S = 60
EXFILTRATION = """
[scenario]
name = "exfil-now"
include = "normal"

[[attacks]]
class = "burst-exfiltration"
devices = 1
onset_h = [0, 0]
duration_h = 5
effects = [
  { metric = "destination-ip-addresses", op = "members", generator = "public-ip", count = 1 },
  { metric = "all-bytes-out", op = "add", value = 30000000 },
]
"""
PLAYBOOK = """
[[rule]]
kind = "monitor.destination.*"
min_severity = "low"
actions = [{ action = "quarantine", mode = "auto" }]
"""


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    for opened in home_runtime(tmp_path_factory, "monitor-live", organization="Live", now=T0):
        with opened.uow.begin() as tx:
            for device_id in (THIEF, *NORMAL):
                tx.devices.add(id=device_id, model=MODEL, state="enrolled", now=T0)
        yield _configured(opened)


def _behaviours() -> dict[str, DeviceBehaviour]:
    normal = resolve_scenario("normal", read_file=None)
    out = {
        d: DeviceBehaviour(
            normal,
            device_index=i,
            device_id=d,
            model=PROFILE,
            seed=5,
            start=T0,
            devices=len(NORMAL),
        )
        for i, d in enumerate(NORMAL)
    }
    attack = load_scenario(EXFILTRATION, source="exfil-now.toml")
    out[THIEF] = DeviceBehaviour(attack, device_index=0, device_id=THIEF, model=PROFILE, seed=5,
                                 start=T0, devices=1)  # fmt: skip
    return out


def _windows(behaviours: dict[str, DeviceBehaviour], first: int, last: int) -> list[MetricsRecord]:
    step = timedelta(seconds=INTERVAL_S)
    return [
        dataclasses.replace(b.record(T0 + k * step, INTERVAL_S), model=MODEL)
        for k in range(first, last + 1)
        for b in behaviours.values()
    ]


def _configured(rt: Runtime) -> Runtime:
    """Rules allowing the normal devices' /24s for the model; a playbook that quarantines."""
    usual = {
        str(ipaddress.ip_network(f"{a}/24", strict=False))
        for record in _windows(
            {d: b for d, b in _behaviours().items() if d != THIEF}, first=1, last=600
        )
        for a in record.sets.get("destination-ip-addresses", ())
    }
    rules = tomllib.loads(DEFAULT_RULES_TOML)
    rules["models"] = {MODEL: {"allow": {"destinations": sorted(usual)}}}
    rt.settings.path("rules.toml").write_text(tomli_w.dumps(rules))
    rt.settings.path("playbook.toml").write_text(PLAYBOOK)
    monitoring = MonitoringSettings(rules="rules.toml", playbooks="playbook.toml", learning_hours=1)
    return dataclasses.replace(
        rt, settings=rt.settings.model_copy(update={"monitoring": monitoring})
    )


def _store(rt: Runtime, records: list[MetricsRecord], *, at: datetime) -> None:
    with rt.uow.begin() as tx:
        tx.monitor_metrics.add_many(records, received_at=at)


def _alerts(rt: Runtime) -> list[tuple[int, str, str]]:
    with rt.uow.begin(read_only=True) as tx:
        return sorted((a.id, a.device_id, a.kind) for a in tx.alerts.page(AlertQuery(), limit=500))


def test_the_monitor_alerts_quarantines_and_a_restart_does_not_alert_again(rt: Runtime) -> None:
    behaviours = _behaviours()
    clock = [T0 + timedelta(minutes=30)]
    _store(rt, _windows(behaviours, 1, 30), at=clock[0])
    monitor = MonitorWorker(rt, now=lambda: clock[0])
    assert monitor.replay() == 0  # nothing scored yet
    report = monitor.step()
    assert report.windows == 4 * 30
    alerts = _alerts(rt)
    assert alerts and {device for _, device, _ in alerts} == {THIEF}
    assert any(kind.startswith("monitor.destination.") for _, _, kind in alerts)
    with rt.uow.begin(read_only=True) as tx:
        assert tx.attestation.quarantine(THIEF) is not None
        assert all(tx.attestation.quarantine(d) is None for d in NORMAL)
        assert tx.monitor_metrics.cursor(CURSOR) == tx.monitor_metrics.last_id()

    # A restart: the learning hour is replayed into the new detector, findings discarded.
    clock[0] = T0 + timedelta(minutes=40)
    _store(rt, _windows(behaviours, 31, 40), at=clock[0])
    restarted = MonitorWorker(rt, now=lambda: clock[0])
    assert restarted.replay() == 4 * 30
    assert _alerts(rt) == alerts
    assert restarted.step().windows == 4 * 10  # only what arrived after the cursor
    assert _alerts(rt) == alerts  # the thief's findings joined its open alerts; no one else's


def test_a_changed_rules_file_is_reloaded_and_a_broken_one_refused(rt: Runtime) -> None:
    monitor = MonitorWorker(rt, now=lambda: T0 + timedelta(minutes=50))
    path = rt.settings.path("rules.toml")
    text = path.read_text()
    try:
        path.write_text(text + "\n# touched\n")
        assert monitor.reload_if_changed()
        detector = monitor.detector
        path.write_text("version = 'nope'")
        assert not monitor.reload_if_changed()
        assert monitor.detector is detector  # the running rules stay
    finally:
        path.write_text(text)
