"""Alerts, their actions and the notifications outbox in the store (migration 0009), on SQLite
and PostgreSQL: records back as written, joins, state changes, filters and pages, transitions
that happen once, the outbox's due order and its end states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trustfleet.errors import InvalidInput, NotFound
from trustfleet.store import AlertQuery, AlertRecord, Transaction, UnitOfWork

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # stored values only: no clock is compared


def _alert(
    tx: Transaction, device: str, kind: str = "monitor.port.new", severity: str = "medium"
) -> AlertRecord:
    return tx.alerts.add(
        device_id=device, kind=kind, severity=severity, detector="rule", summary="s",
        evidence={"ports": ["4444"]}, at=NOW, now=NOW,
    )  # fmt: skip


def test_alerts_round_trip_join_and_filter(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-alerts-1", model="m", now=NOW)
        first = _alert(tx, "dev-alerts-1")
        assert tx.alerts.get(first.id) == first and first.state == "open"
        assert first.evidence == {"ports": ["4444"]} and first.findings == 1
        later = NOW + timedelta(minutes=5)
        joined = tx.alerts.join(
            first, severity="high", summary="later", evidence={"n": 2}, at=later, now=later
        )
        assert tx.alerts.get(first.id) == joined
        assert (joined.findings, joined.severity, joined.last_seen) == (2, "high", later)
        early = tx.alerts.join(
            joined, severity="low", summary="late arrival", evidence={}, at=NOW, now=later
        )
        assert early.summary == "later" and early.severity == "high" and early.findings == 3
        other = _alert(tx, "dev-alerts-1", kind="monitor.volume.high", severity="low")
        assert tx.alerts.latest("dev-alerts-1", "monitor.port.new") == early
        until = NOW + timedelta(hours=1)
        quiet = tx.alerts.set_state(
            other.id, "suppressed", by="op", now=NOW, suppressed_until=until
        )
        assert quiet.suppressed_until == until and quiet.updated_by == "op"
        page = tx.alerts.page(AlertQuery(device_id="dev-alerts-1"), limit=10)
        assert [a.id for a in page] == [first.id, other.id]  # most recently seen first
        assert tx.alerts.page(AlertQuery(state="suppressed"), limit=10) == [quiet]
        assert tx.alerts.page(AlertQuery(severity="high", kind="monitor.port.new")) == [
            tx.alerts.require(first.id)
        ]
        with pytest.raises(NotFound):
            tx.alerts.require(10**9)
        with pytest.raises(InvalidInput):
            _alert(tx, "dev-alerts-1", severity="extreme")
        with pytest.raises(NotFound):
            _alert(tx, "dev-nobody")


def test_actions_move_once(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-alerts-2", model="m", now=NOW)
        alert = _alert(tx, "dev-alerts-2")
        action = tx.alert_actions.add(
            alert_id=alert.id, action="revoke", mode="approval", state="pending", now=NOW
        )
        assert tx.alert_actions.for_alert(alert.id) == [action]
        assert tx.alert_actions.transition(
            action.id, expect="pending", state="approved", now=NOW, by="op"
        )
        assert not tx.alert_actions.transition(
            action.id, expect="pending", state="rejected", now=NOW, by="other"
        )
        assert tx.alert_actions.transition(
            action.id, expect="approved", state="done", now=NOW, result="revoked"
        )
        done = tx.alert_actions.require(action.id)
        assert (done.state, done.decided_by, done.result) == ("done", "op", "revoked")


def test_outbox_due_order_and_end_states(uow: UnitOfWork) -> None:
    with uow.begin() as tx:
        tx.devices.add(id="dev-alerts-3", model="m", now=NOW)
        alert = _alert(tx, "dev-alerts-3")
        a = tx.notifications.add(alert_id=alert.id, channel="webhook", target="w", payload="{}",
                                 now=NOW)  # fmt: skip
        b = tx.notifications.add(alert_id=alert.id, channel="syslog", target="s", payload="{}",
                                 now=NOW + timedelta(seconds=1))  # fmt: skip
        assert tx.notifications.due(now=NOW) == [a]
        assert tx.notifications.retry_at(a.id, attempts=1, at=NOW + timedelta(seconds=9), error="x")
        assert [n.id for n in tx.notifications.due(now=NOW + timedelta(seconds=5))] == [b.id]
        assert tx.notifications.mark_sent(b.id, attempts=1, now=NOW)
        assert not tx.notifications.mark_sent(b.id, attempts=2, now=NOW)  # only once
        assert tx.notifications.mark_failed(a.id, attempts=2, error="gone")
        assert tx.notifications.due(now=NOW + timedelta(days=1)) == []
        states = [(n.state, n.attempts) for n in tx.notifications.for_alert(alert.id)]
        assert states == [("failed", 2), ("sent", 1)]
        with pytest.raises(InvalidInput):
            tx.notifications.add(alert_id=alert.id, channel="webhook", target="w",
                                 payload="x" * 40_000, now=NOW)  # fmt: skip
