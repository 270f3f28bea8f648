"""Notifications reach real receivers on loopback: a signed webhook over HTTPS (verified by the
receiver, failing its first requests: retries and backoff on the ``now`` parameter), syslog over
UDP and TCP (RFC 5424 frames parsed by the listener)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from responsekit import T0, configured

from support.receivers import WebhookReceiver, syslog_listener, tls_files, webhook_receiver
from support.runtimes import new_idevid
from support.waiting import wait_for
from trustfleet.monitoring import Finding
from trustfleet.monitoring.notify_format import SYSLOG_SD_ID
from trustfleet.services import alerts
from trustfleet.services.notify import DeliveryReport, deliver_due
from trustfleet.services.runtime import Runtime

pytestmark = pytest.mark.integration

SECRET = b"a-long-random-shared-secret"


def _secret_file(rt: Runtime, name: str, secret: bytes) -> str:
    path = rt.settings.path(name)
    path.write_bytes(secret + b"\n")
    path.chmod(0o600)
    return name


def _raise(rt: Runtime, device_id: str, kind: str = "monitor.destination.new") -> int:
    new_idevid(rt, device_id, model="mon-test", now=T0)
    found = Finding(
        device_id=device_id, kind=kind, severity="high", detector="rule", at=T0,
        summary=f"new destination 203.0.113.9 on {device_id}", evidence={"ip": "203.0.113.9"},
    )  # fmt: skip
    (change,) = alerts.record_findings(rt, [found], now=T0)
    return change.alert_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_https_webhook_signed_retried_with_backoff(home_rt: Runtime, tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path)
    receiver = WebhookReceiver(secret=SECRET, now=int(T0.timestamp()), fail_first=2)
    with webhook_receiver(receiver, tls=(cert, key)):
        hook = {
            "name": "soc", "url": f"https://127.0.0.1:{receiver.port}/hooks/tf",
            "secret_file": _secret_file(home_rt, "soc.secret", SECRET), "ca": str(ca),
        }  # fmt: skip
        rt = configured(home_rt, webhooks=[hook], notify_backoff_s=2, notify_backoff_max_s=3)
        alert_id = _raise(rt, "dev-hook-0001")
        assert deliver_due(rt, now=T0) == DeliveryReport(retrying=1)
        (item,) = alerts.get_alert(rt, alert_id).notifications
        assert item.attempts == 1 and item.next_attempt_at == T0 + timedelta(seconds=2)
        assert "503" in (item.last_error or "")
        assert deliver_due(rt, now=T0 + timedelta(seconds=1)) == DeliveryReport()  # not due
        assert deliver_due(rt, now=T0 + timedelta(seconds=2)) == DeliveryReport(retrying=1)
        (item,) = alerts.get_alert(rt, alert_id).notifications
        # 2 * 2 = 4 s, capped at notify_backoff_max_s = 3 s
        assert item.next_attempt_at == T0 + timedelta(seconds=5)
        receiver.now = int((T0 + timedelta(seconds=5)).timestamp())
        assert deliver_due(rt, now=T0 + timedelta(seconds=5)) == DeliveryReport(sent=1)
    (item,) = alerts.get_alert(rt, alert_id).notifications
    assert (item.state, item.attempts, item.sent_at) == ("sent", 3, T0 + timedelta(seconds=5))
    (body,) = receiver.accepted
    doc = json.loads(body)
    assert doc["alert_id"] == alert_id and doc["device_id"] == "dev-hook-0001"
    assert doc["kind"] == "monitor.destination.new" and doc["evidence"] == {"ip": "203.0.113.9"}
    assert receiver.refused == [] and receiver.requests == 3


def test_wrong_secret_and_dead_receiver_end_failed(home_rt: Runtime) -> None:
    receiver = WebhookReceiver(secret=b"the receiver's own", now=int(T0.timestamp()))
    with webhook_receiver(receiver):
        hooks = [
            {"name": "wrong", "url": f"http://127.0.0.1:{receiver.port}/",
             "secret_file": _secret_file(home_rt, "wrong.secret", SECRET)},
            {"name": "dead", "url": f"http://127.0.0.1:{_free_port()}/",
             "secret_file": _secret_file(home_rt, "dead.secret", SECRET), "timeout_s": 2},
        ]  # fmt: skip
        rt = configured(home_rt, webhooks=hooks, notify_max_attempts=2, notify_backoff_s=1)
        alert_id = _raise(rt, "dev-hook-0002")
        assert deliver_due(rt, now=T0) == DeliveryReport(retrying=2)
        assert deliver_due(rt, now=T0 + timedelta(seconds=1)) == DeliveryReport(failed=2)
    assert receiver.refused == ["monitor.webhook.signature"] * 2 and not receiver.accepted
    items = alerts.get_alert(rt, alert_id).notifications
    assert [(n.target, n.state, n.attempts) for n in items] == [
        ("wrong", "failed", 2), ("dead", "failed", 2)
    ]  # fmt: skip
    from trustfleet.services.inventory import list_events

    failed = list_events(rt, type_prefix="monitor.notify.failed", subject="device:dev-hook-0002",
                         limit=10).items  # fmt: skip
    assert {e.details["receiver"] for e in failed} == {"wrong", "dead"}
    assert all(e.actor == "monitor" and e.outcome == "refused" for e in failed)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_syslog_reaches_listener(home_rt: Runtime, transport: str) -> None:
    with syslog_listener(transport) as (port, messages):
        receiver = {"name": f"siem-{transport}", "port": port, "transport": transport,
                    "app_name": "tf-test"}  # fmt: skip
        rt = configured(home_rt, syslog=[receiver])
        alert_id = _raise(rt, f"dev-syslog-{transport}")
        assert deliver_due(rt, now=T0) == DeliveryReport(sent=1)
        (msg,) = wait_for(lambda: list(messages), what=f"a syslog message over {transport}")
    assert msg.version == 1 and msg.msgid == "alert" and msg.app_name == "tf-test"
    assert msg.pri == 4 * 8 + 3 and msg.timestamp == T0
    assert msg.sd[SYSLOG_SD_ID] == {
        "alert": str(alert_id), "device": f"dev-syslog-{transport}",
        "kind": "monitor.destination.new", "severity": "high",
    }  # fmt: skip
    assert msg.bom and "203.0.113.9" in msg.msg
