"""The demo's monitoring stage: the fleet reports metrics, one device exfiltrates, it is caught.

Every running device's metrics follow the built-in ``normal`` scenario (reported every second);
the operator's rules allow the model's usual destinations, and the playbook quarantines a
device at once on an unknown destination or an exfiltration-like volume. One device follows a
burst-exfiltration scenario from its first window: the monitor (``monitor#0``) raises an alert
for it, the playbook quarantines it, and nobody else raises anything.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

import tomli_w

from trustfleet.fileio import write_atomic
from trustfleet.monitoring.playbooks import DEFAULT_PLAYBOOK_TOML
from trustfleet.monitoring.rules import DEFAULT_RULES_TOML
from trustfleet.monitoring.scenario import DeviceBehaviour, resolve_scenario
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.process import wait_until
from trustfleet.sim.scenarios._common import AGENT_TIMEOUT_S, wait_silent
from trustfleet.sim.scenarios._result import Observed, stage

__all__ = ["PLAYBOOKS_FILE", "RULES_FILE", "detect", "monitoring_files"]

RULES_FILE: Final = "monitor/rules.toml"
"""The demo home's detection rules (``[monitoring] rules``)."""
PLAYBOOKS_FILE: Final = "monitor/playbooks.toml"
"""The demo home's playbook (``[monitoring] playbooks``)."""
PROFILE: Final = "gw-x1"
"""The scenario model the demo's devices behave as."""
SEED: Final = 13
DETECT_TIMEOUT_S: Final = 60.0
_LEARN_WINDOWS: Final = 900
"""Windows of the normal behaviour the allow-list is computed from (15 min at 1 s)."""
_EXFILTRATION: Final = {
    "scenario": {
        "name": "demo-exfiltration",
        "description": "One device sends bulk data to a new public address from its start.",
        "include": "normal",
    },
    "attacks": [
        {
            "class": "burst-exfiltration",
            "devices": 1,
            "onset_h": [0, 0],
            "duration_h": 2,
            "effects": [
                {
                    "metric": "destination-ip-addresses",
                    "op": "members",
                    "generator": "public-ip",
                    "count": 1,
                    "ports": [443],
                },
                {"metric": "all-bytes-out", "op": "add", "value": 30_000_000},
                {"metric": "all-packets-out", "op": "add", "value": 22_000},
            ],
        }
    ],
}
_PLAYBOOK: Final = {
    "rule": [
        {
            "kind": "monitor.destination.*",
            "min_severity": "low",
            "actions": [{"action": "quarantine", "mode": "auto"}, {"action": "notify"}],
        },
        {
            "kind": "monitor.volume.*",
            "min_severity": "low",
            "actions": [{"action": "quarantine", "mode": "auto"}, {"action": "notify"}],
        },
        {"kind": "*", "min_severity": "low", "actions": [{"action": "notify"}]},
    ]
}


def monitoring_files(fleet: SimFleet) -> None:
    """Give the demo home a rules file and a playbook (the built-in ones for now) that the
    ``detect`` stage rewrites; ``monitor#0`` reloads the rules when the file changes."""
    home = fleet.srv.home
    (home / RULES_FILE).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(home / RULES_FILE, DEFAULT_RULES_TOML.encode("utf-8"))
    write_atomic(home / PLAYBOOKS_FILE, DEFAULT_PLAYBOOK_TOML.encode("utf-8"))
    fleet.srv.configure({"monitoring": {"rules": RULES_FILE, "playbooks": PLAYBOOKS_FILE}})


def _usual_networks(devices: int) -> list[str]:
    """The /24 networks the normal behaviour of ``devices`` devices reaches (the allow-list)."""
    normal = resolve_scenario("normal", read_file=None)
    start = utc_now()
    networks: set[str] = set()
    for index in range(devices):
        behaviour = DeviceBehaviour(
            normal, device_index=index, device_id=f"dev-allow-{index:04d}", model=PROFILE,
            seed=SEED, start=start, devices=devices,
        )  # fmt: skip
        for k in range(1, _LEARN_WINDOWS + 1):
            record = behaviour.record(start + timedelta(seconds=k), 1)
            for address in record.sets.get("destination-ip-addresses", ()):
                networks.add(str(ipaddress.ip_network(f"{address}/24", strict=False)))
    return sorted(networks)


def _write_rules(fleet: SimFleet, devices: int) -> list[str]:
    rules: dict[str, Any] = tomllib.loads(DEFAULT_RULES_TOML)
    allowed = _usual_networks(devices)
    rules["models"] = {fleet.model: {"allow": {"destinations": allowed}}}
    write_atomic(fleet.srv.home / RULES_FILE, tomli_w.dumps(rules).encode("utf-8"))
    write_atomic(fleet.srv.home / PLAYBOOKS_FILE, tomli_w.dumps(_PLAYBOOK).encode("utf-8"))
    return allowed


def _new_alerts(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, list[str]]:
    """The kinds in ``after`` beyond those in ``before`` (as multisets), by device."""
    out = {}
    for device_id, kinds in after.items():
        new = Counter(kinds) - Counter(before.get(device_id, []))
        if new:
            out[device_id] = sorted(new.elements())
    return out


def _start_scenarios(fleet: SimFleet, normal: Sequence[str], thief: str) -> None:
    scenario = fleet.workdir / "demo-exfiltration.toml"
    write_atomic(scenario, tomli_w.dumps(_EXFILTRATION).encode("utf-8"))
    fleet.follow_scenario("normal", normal, seed=SEED, profile=PROFILE)
    fleet.follow_scenario(str(scenario), [thief], seed=SEED, profile=PROFILE)


@stage("detect")
def detect(fleet: SimFleet) -> Observed:
    """Metrics every second; one device exfiltrates: alerted, quarantined, nobody else raised."""
    live = [d for d, s in fleet.device_states(fleet.running()).items() if s == "enrolled"]
    thief, normal = live[0], live[1:]
    allowed = _write_rules(fleet, len(live))
    before = fleet.alert_kinds(service_side=False)
    before_service = fleet.alert_kinds(service_side=True)
    started = utc_now()
    since = fleet.metrics_counts()
    _start_scenarios(fleet, normal, thief)
    # Not the thief's: it may be quarantined (its publishing refused) after its first window.
    fleet.wait_metrics(normal, windows=2, since=since, timeout_s=AGENT_TIMEOUT_S)
    raised = wait_until(
        lambda: _new_alerts(before, fleet.alert_kinds(service_side=False)).get(thief),
        timeout_s=DETECT_TIMEOUT_S, what="an alert for the exfiltrating device",
    )  # fmt: skip
    record = wait_until(
        lambda: fleet.quarantine_of(thief), timeout_s=DETECT_TIMEOUT_S, what="the quarantine"
    )
    blocked = wait_silent(fleet, thief, others=normal, rows=3, timeout_s=AGENT_TIMEOUT_S)
    fleet.wait_monitor_scored(timeout_s=DETECT_TIMEOUT_S)
    new = _new_alerts(before, fleet.alert_kinds(service_side=False))
    others = {d: k for d, k in new.items() if d in normal}
    elsewhere = {d: k for d, k in new.items() if d != thief and d not in normal}
    service = _new_alerts(before_service, fleet.alert_kinds(service_side=True))
    return Observed(
        {
            "an alert is raised for the exfiltrating device": bool(raised),
            "the playbook quarantines it": record is not None,
            "its telemetry is blocked while the others flow": blocked,
            "no other reporting device raised an alert from its metrics": not others,
        },
        {
            "device": thief,
            "alert_kinds": sorted(set(raised or [])),
            "stage_start_to_quarantine_s": round((record.at - started).total_seconds(), 2),
            "reporting_devices": len(live),
            "allowed_networks": len(allowed),
            "other_alerts": others,
            "alerts_of_devices_not_reporting": elsewhere,
            # Earlier stages' real events (the tampered device's failed attestation, the revoked
            # one's refused connections) may raise service-side alerts when their window ends.
            "service_side_alerts": service,
            "alerts_before_stage": sum(
                len(k) for k in (*before.values(), *before_service.values())
            ),
        },
    )
