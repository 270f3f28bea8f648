"""The console's Alerts page: the list, one alert, and its buttons (acknowledge, reject an
action, resolve) in a real browser with a security officer's session."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import ConsoleSession
from trustfleet.monitoring import Finding
from trustfleet.services.alerts import get_alert, record_findings
from trustfleet.sim.fleet import utc_now

pytestmark = pytest.mark.integration


def test_alert_list_detail_and_buttons(console: ConsoleSession) -> None:
    device = console.bystander()
    rt = console.fleet.srv.runtime
    found = Finding(
        device_id=device, kind="monitor.console.check", severity="critical", detector="rule",
        at=utc_now(), summary="a console check", evidence={"ports": ["4444"]},
    )  # fmt: skip
    (change,) = record_findings(rt, [found], now=utc_now())
    console.login_with_totp(console.add_operator("security-officer"))
    console.goto("/console/alerts?severity=critical&kind=monitor.console.check")
    expect(console.page.locator("#alerts")).to_contain_text(device)
    console.page.click(f"#alerts a:text-is('{change.alert_id}')")
    expect(console.page.locator("h1")).to_contain_text("monitor.console.check")
    expect(console.page.locator("#alert")).to_contain_text("4444")
    console.page.click("button:text('Acknowledge')")
    expect(console.page.locator("#done")).to_contain_text("ack")
    console.page.click("#actions button:text('Reject')")
    expect(console.page.locator("#actions")).to_contain_text("rejected")
    console.page.click("button:text('Resolve')")
    expect(console.page.locator("#alert")).to_contain_text("resolved")
    detail = get_alert(rt, change.alert_id)
    assert detail.alert.state == "resolved"
    assert [a.state for a in detail.actions] == ["done", "rejected"]
    assert console.post(f"/console/alerts/{change.alert_id}/ack", {"csrf": "forged"}) == 403
