"""Alerts in the real store: dedup, quiet time, suppression, lifecycle, playbook actions through
the existing quarantine and revocation services, approvals."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from conftest import T0, configured
from support.runtimes import new_idevid
from trustfleet.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from trustfleet.monitoring import Finding
from trustfleet.services import alerts
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

AUTO_QUARANTINE = """
[[rule]]
kind = "monitor.destination.*"
min_severity = "high"
actions = [{ action = "quarantine", mode = "auto" }]

[[rule]]
kind = "monitor.file.changed"
actions = [{ action = "revoke", mode = "approval" }, { action = "quarantine" }]
"""


def finding(
    device: str, at: datetime, *, kind: str = "monitor.volume.high", **over: Any
) -> Finding:
    values: dict[str, Any] = {
        "device_id": device, "kind": kind, "severity": "medium", "detector": "baseline",
        "at": at, "summary": f"{kind} on {device}", "evidence": {"all-bytes-out": 1.0},
    }  # fmt: skip
    values.update(over)
    return Finding(**values)


def device(rt: Runtime, device_id: str) -> None:
    new_idevid(rt, device_id, model="mon-test", now=T0)


def events(rt: Runtime, device_id: str) -> list[tuple[str, str]]:
    from trustfleet.services.inventory import list_events

    page = list_events(rt, subject=f"device:{device_id}", sort="id", limit=1000)
    return [(e.type, e.actor) for e in page.items]


def test_findings_dedup_within_quiet_time(home_rt: Runtime) -> None:
    rt = configured(home_rt, alert_quiet_s=600)
    device(rt, "dev-dedup-1")
    first = alerts.record_findings(rt, [finding("dev-dedup-1", T0)], now=T0)
    assert [c.change for c in first] == ["raised"]
    more = [finding("dev-dedup-1", T0 + timedelta(minutes=m), severity="high") for m in (5, 14)]
    joined = alerts.record_findings(rt, more, now=T0 + timedelta(minutes=15))
    assert [(c.change, c.alert_id) for c in joined] == [("joined", first[0].alert_id)] * 2
    alert = alerts.get_alert(rt, first[0].alert_id).alert
    assert alert.findings == 3 and alert.severity == "high" and alert.state == "open"
    assert alert.last_seen == T0 + timedelta(minutes=14)
    # quiet for the whole quiet time: a new alert
    later = alerts.record_findings(rt, [finding("dev-dedup-1", T0 + timedelta(minutes=25))], now=T0)
    assert later[0].change == "raised" and later[0].alert_id != first[0].alert_id
    # another kind on the same device is its own alert
    other = alerts.record_findings(
        rt, [finding("dev-dedup-1", T0, kind="monitor.port.new")], now=T0
    )
    assert other[0].change == "raised"
    raised = [t for t in events(rt, "dev-dedup-1") if t[0] == "monitor.alert.raised"]
    assert raised == [("monitor.alert.raised", "monitor")] * 3


def test_unknown_device_skipped(home_rt: Runtime) -> None:
    assert alerts.record_findings(home_rt, [finding("dev-nobody", T0)], now=T0) == []


def test_suppressed_alert_swallows_until_its_time(home_rt: Runtime) -> None:
    rt = configured(home_rt, alert_quiet_s=60)
    device(rt, "dev-supp-1")
    (raised,) = alerts.record_findings(rt, [finding("dev-supp-1", T0)], now=T0)
    until = T0 + timedelta(hours=2)
    changed = alerts.suppress(rt, raised.alert_id, until=until, actor="operator:x", now=T0)
    assert changed.state == "suppressed" and changed.suppressed_until == until
    assert changed.updated_by == "operator:x"
    late = alerts.record_findings(rt, [finding("dev-supp-1", T0 + timedelta(hours=1))], now=T0)
    assert late[0].change == "suppressed" and late[0].alert_id == raised.alert_id
    after = alerts.record_findings(
        rt, [finding("dev-supp-1", until + timedelta(seconds=1))], now=T0
    )
    assert after[0].change == "raised"
    with pytest.raises(InvalidInput):
        alerts.suppress(rt, raised.alert_id, until=T0 - timedelta(seconds=1), actor="x", now=T0)
    assert ("monitor.alert.suppressed", "operator:x") in events(rt, "dev-supp-1")


def test_lifecycle_and_its_conflicts(home_rt: Runtime) -> None:
    device(home_rt, "dev-life-1")
    (raised,) = alerts.record_findings(home_rt, [finding("dev-life-1", T0)], now=T0)
    ack = alerts.acknowledge(home_rt, raised.alert_id, actor="operator:a", now=T0)
    assert ack.state == "acknowledged" and ack.updated_by == "operator:a"
    with pytest.raises(Conflict):
        alerts.acknowledge(home_rt, raised.alert_id, actor="operator:a", now=T0)
    # an acknowledged alert still collects its findings
    joined = alerts.record_findings(
        home_rt, [finding("dev-life-1", T0 + timedelta(seconds=5))], now=T0
    )
    assert joined[0].change == "joined"
    done = alerts.resolve(home_rt, raised.alert_id, actor="operator:b", now=T0)
    assert done.state == "resolved"
    with pytest.raises(Conflict):
        alerts.resolve(home_rt, raised.alert_id, actor="operator:b", now=T0)
    # a finding after resolution raises a new alert even within the quiet time
    again = alerts.record_findings(
        home_rt, [finding("dev-life-1", T0 + timedelta(seconds=6))], now=T0
    )
    assert again[0].change == "raised"
    with pytest.raises(NotFound):
        alerts.acknowledge(home_rt, 10**9, actor="x", now=T0)
    kinds = [t for t, _ in events(home_rt, "dev-life-1")]
    assert "monitor.alert.acknowledged" in kinds and "monitor.alert.resolved" in kinds


def test_list_filters_and_pages(home_rt: Runtime) -> None:
    device(home_rt, "dev-list-1")
    kinds = [f"monitor.list.k{n}" for n in range(5)]
    alerts.record_findings(home_rt, [finding("dev-list-1", T0, kind=k) for k in kinds], now=T0)
    page = alerts.list_alerts(home_rt, device_id="dev-list-1", limit=3)
    assert len(page.items) == 3 and page.next_cursor is not None
    rest = alerts.list_alerts(home_rt, device_id="dev-list-1", limit=3, cursor=page.next_cursor)
    assert {a.kind for a in (*page.items, *rest.items)} == set(kinds) and rest.next_cursor is None
    only = alerts.list_alerts(home_rt, kind="monitor.list.k2", state="open", severity="medium")
    assert [a.kind for a in only.items] == ["monitor.list.k2"]
    with pytest.raises(InvalidInput):
        alerts.list_alerts(home_rt, state="gone")


def test_auto_quarantine_really_quarantines(home_rt: Runtime) -> None:
    rt = configured(home_rt, playbook=AUTO_QUARANTINE)
    device(rt, "dev-auto-q")
    found = finding("dev-auto-q", T0, kind="monitor.destination.new", severity="high")
    (raised,) = alerts.record_findings(rt, [found], now=T0)
    with rt.uow.begin(read_only=True) as tx:
        quarantine = tx.attestation.quarantine("dev-auto-q")
    assert quarantine is not None and quarantine.by == "monitor"
    detail = alerts.get_alert(rt, raised.alert_id)
    assert [(a.action, a.mode, a.state, a.decided_by) for a in detail.actions] == [
        ("quarantine", "auto", "done", "monitor")
    ]
    seen = events(rt, "dev-auto-q")
    assert ("device.quarantined", "monitor") in seen and ("monitor.action.done", "monitor") in seen
    # a second alert of another kind under the same rule: already quarantined is no failure
    other = finding("dev-auto-q", T0, kind="monitor.destination.burst", severity="critical")
    (second,) = alerts.record_findings(rt, [other], now=T0)
    (action,) = alerts.get_alert(rt, second.alert_id).actions
    assert action.state == "done" and action.result == "already quarantined"


def test_escalation_runs_the_new_severity_s_actions(home_rt: Runtime) -> None:
    rt = configured(home_rt, playbook=AUTO_QUARANTINE)
    device(rt, "dev-escalate")
    low = finding("dev-escalate", T0, kind="monitor.destination.new", severity="medium")
    (raised,) = alerts.record_findings(rt, [low], now=T0)
    assert raised.actions == ()  # below the rule's min_severity
    high = finding("dev-escalate", T0 + timedelta(seconds=30), kind="monitor.destination.new",
                   severity="high")  # fmt: skip
    (joined,) = alerts.record_findings(rt, [high], now=T0)
    assert joined.change == "joined" and joined.alert_id == raised.alert_id
    detail = alerts.get_alert(rt, raised.alert_id)
    assert detail.alert.severity == "high"
    assert [(a.action, a.state) for a in detail.actions] == [("quarantine", "done")]
    with rt.uow.begin(read_only=True) as tx:
        assert tx.attestation.quarantine("dev-escalate") is not None
    again = finding("dev-escalate", T0 + timedelta(seconds=60), kind="monitor.destination.new",
                    severity="critical")  # fmt: skip
    alerts.record_findings(rt, [again], now=T0)  # escalates again: quarantine is not asked twice
    assert len(alerts.get_alert(rt, raised.alert_id).actions) == 1
    assert ("monitor.alert.escalated", "monitor") in events(rt, "dev-escalate")


def test_approval_revoke_really_revokes(home_rt: Runtime) -> None:
    rt = configured(home_rt, playbook=AUTO_QUARANTINE)
    device(rt, "dev-appr-1")
    found = finding("dev-appr-1", T0, kind="monitor.file.changed", severity="critical")
    (raised,) = alerts.record_findings(rt, [found], now=T0)
    revoke, quarantine = alerts.get_alert(rt, raised.alert_id).actions
    assert (revoke.action, revoke.state, quarantine.state) == ("revoke", "pending", "pending")
    with rt.uow.begin(read_only=True) as tx:
        assert tx.devices.require("dev-appr-1").state == "manufactured"
        assert tx.attestation.quarantine("dev-appr-1") is None  # nothing ran on its own
    # a fleet operator may manage alerts in no case; a security officer lacking nothing may
    with pytest.raises(PermissionDenied):
        alerts.approve_action(rt, revoke.id, actor="operator:f", now=T0, role="fleet-operator")
    done = alerts.approve_action(
        rt, revoke.id, actor="operator:sec", now=T0, role="security-officer"
    )
    assert done.state == "done" and done.decided_by == "operator:sec"
    with rt.uow.begin(read_only=True) as tx:
        assert tx.devices.require("dev-appr-1").state == "revoked"
        certs = tx.certificates.list_for_device("dev-appr-1")
    assert certs and all(c.status == "revoked" for c in certs)
    with pytest.raises(Conflict):
        alerts.approve_action(rt, revoke.id, actor="operator:sec", now=T0)
    rejected = alerts.reject_action(rt, quarantine.id, actor="operator:sec", now=T0)
    assert rejected.state == "rejected"
    with pytest.raises(Conflict):
        alerts.approve_action(rt, quarantine.id, actor="operator:sec", now=T0)
    seen = events(rt, "dev-appr-1")
    for expected in [
        ("monitor.action.pending", "monitor"),
        ("monitor.action.approved", "operator:sec"),
        ("device.revoked", "operator:sec"),
        ("monitor.action.done", "operator:sec"),
        ("monitor.action.rejected", "operator:sec"),
    ]:
        assert expected in seen, expected


def test_failed_action_is_recorded_not_raised(home_rt: Runtime) -> None:
    playbook = '[[rule]]\nkind = "*"\nactions = [{ action = "reattest", mode = "auto" }]\n'
    rt = configured(home_rt, playbook=playbook)
    device(rt, "dev-fail-1")  # manufactured: no AK, so the challenge is refused
    (raised,) = alerts.record_findings(rt, [finding("dev-fail-1", T0)], now=T0)
    (action,) = alerts.get_alert(rt, raised.alert_id).actions
    assert action.state == "failed" and action.result
    assert ("monitor.action.failed", "monitor") in events(rt, "dev-fail-1")


def test_bad_playbook_file_falls_back_to_the_built_in(home_rt: Runtime) -> None:
    rt = configured(home_rt, playbook="[[rule]]\nkind = 3\n")
    device(rt, "dev-fallback-1")
    found = finding("dev-fallback-1", T0, severity="critical")
    (raised,) = alerts.record_findings(rt, [found], now=T0)
    actions = alerts.get_alert(rt, raised.alert_id).actions
    assert [(a.action, a.state) for a in actions] == [("notify", "done"), ("quarantine", "pending")]
    assert actions[0].result == "0 notification(s) queued"  # no receiver is configured
    with pytest.raises(InvalidInput, match=r"rule\[0\]\.kind"):
        alerts.check_playbooks_file(rt.settings.path(rt.settings.monitoring.playbooks))
