"""The console over a live fleet: browse, watch a campaign advance, revoke a device.

The tests run in this order on the session's fleet: the campaign leaves out the device that
the revocation test then cuts off.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, expect

from conftest import ConsoleSession
from trustfleet.services.campaigns import create_campaign
from trustfleet.services.commands import list_device_commands
from trustfleet.services.ota import build_release, publish_release
from trustfleet.services.queries import attestation_status
from trustfleet.sim.fleet import SimFleet, utc_now
from trustfleet.sim.image import build_image
from trustfleet.sim.process import wait_until
from trustfleet.store import MAX_LIST_LIMIT

pytestmark = pytest.mark.integration

V2 = "1.1.0"
IMAGE_BYTES = 8 * 1024 * 1024  # the size the demo's first release has (same lineage)
UPDATE_TIMEOUT_MS = 240_000
SILENT_ROWS = 3
SILENT_TRIES = 5
AGENT_TIMEOUT_S = 60.0
DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def test_overview_and_the_inventory(console: ConsoleSession) -> None:
    console.login_with_totp(console.add_operator("fleet-operator"))
    fleet = console.fleet
    expect(console.page.locator("#counts .card").first).to_contain_text(str(len(fleet.device_ids)))
    expect(console.page.locator("svg.chart")).to_have_count(2)

    console.goto("/console/devices")
    rows = console.page.locator("#devices tbody tr")
    expect(rows).to_have_count(len(fleet.device_ids))
    wanted = fleet.device_ids[1]
    console.page.fill("input[name=q]", wanted[-8:])
    console.page.click("form.filters button[type=submit]")
    expect(rows).to_have_count(1)
    console.page.click(f"#devices a:text('{wanted}')")
    expect(console.page.locator("h1")).to_contain_text(wanted)
    expect(console.page.locator("table.grid").first).to_contain_text("ldevid")
    expect(console.page.locator("svg.chart")).to_have_count(1)  # its telemetry
    expect(console.page.locator(".actions a")).to_have_text(["Ping"])  # its role's one action


def _publish_v2(fleet: SimFleet) -> None:
    image = fleet.workdir / f"image-{V2}.bin"
    build_image(image, version=V2, size_bytes=IMAGE_BYTES, seed=fleet.model)
    rt = fleet.srv.runtime
    build_release(rt, image=image, version=V2, model=fleet.model, min_version=None, now=utc_now())
    publish_release(rt, model=fleet.model, version=V2, now=utc_now())


def test_a_campaign_advances_on_its_page(console: ConsoleSession) -> None:
    fleet = console.fleet
    _publish_v2(fleet)
    devices = [d for d in fleet.device_ids if d != fleet.device("revoked")]
    campaign = create_campaign(
        fleet.srv.runtime, version=V2, model=fleet.model, devices=devices, waves=[50, 100],
        max_failure_rate=0.5, now=utc_now(), device_timeout_s=240, actor="operator:test",
    )  # fmt: skip
    console.login_with_totp(console.add_operator("release-manager"))
    console.goto("/console/campaigns")
    console.page.click(f"#campaigns a:text('{campaign.id}')")
    console.page.on("dialog", _accept)  # the controls ask for confirmation
    console.page.click("#campaign-pause")
    expect(console.page.locator("#campaign-state")).to_have_text("paused")
    console.page.click("#campaign-resume")
    expect(console.page).to_have_url(f"{console.base}/console/campaigns/{campaign.id}?done=resume")
    state = console.page.locator("#campaign-state")
    expect(state).to_have_text("completed", timeout=UPDATE_TIMEOUT_MS)  # polled, not reloaded
    expect(console.page).to_have_url(f"{console.base}/console/campaigns/{campaign.id}?done=resume")
    expect(console.page.locator("#campaign-finished")).to_have_text(str(len(devices)))
    assert set(fleet.firmware(devices).values()) == {V2}
    console.goto(f"/console/devices/{devices[0]}")  # the update is in the device's history
    expect(console.page.locator("#updates")).to_contain_text("ota.update.committed")
    expect(console.page.locator("#updates")).to_contain_text(campaign.id)


def _act(console: ConsoleSession, device_id: str, title: str, done: str) -> None:
    """Click an action on a device's page and confirm it."""
    console.goto(f"/console/devices/{device_id}")
    console.page.click(f".actions a:text('{title}')")
    console.page.click("#confirm")
    expect(console.page).to_have_url(f"{console.base}/console/devices/{device_id}?done={done}")


def test_ping_and_re_attest_from_the_device_page(console: ConsoleSession) -> None:
    fleet, device = console.fleet, console.bystander()
    rt = fleet.srv.runtime
    console.login_with_totp(console.add_operator("admin"))
    verdicts = len(attestation_status(rt, device, limit=MAX_LIST_LIMIT).results)
    _act(console, device, "Re-attest", "attest")
    _act(console, device, "Ping", "ping")

    def answered() -> bool:
        (command,) = list_device_commands(rt, device, limit=1, cursor=None).items
        return command.state != "sent"

    def attested() -> bool:
        return len(attestation_status(rt, device, limit=MAX_LIST_LIMIT).results) > verdicts

    wait_until(answered, timeout_s=AGENT_TIMEOUT_S, what="the ping's answer")
    wait_until(attested, timeout_s=AGENT_TIMEOUT_S, what="a new verdict")
    console.goto(f"/console/devices/{device}")
    expect(console.page.locator("#commands tbody tr").first).to_contain_text("answered")
    expect(console.page.locator("#verdicts tbody tr")).to_have_count(verdicts + 1)


def _silent(fleet: SimFleet, victim: str) -> bool:
    """Whether ``victim`` adds no telemetry row while every other device adds a few."""
    others = fleet.running(but=[victim])
    for _ in range(SILENT_TRIES):
        before = fleet.telemetry_counts()
        after = fleet.wait_telemetry(
            others, rows=SILENT_ROWS, since=before, timeout_s=AGENT_TIMEOUT_S
        )
        if after[victim] == before[victim]:
            return True
    return False


def test_revoking_from_the_device_page_cuts_it_off(console: ConsoleSession) -> None:
    fleet = console.fleet
    victim = fleet.device("revoked")
    console.login_with_totp(console.add_operator("security-officer"))
    console.goto(f"/console/devices/{victim}")
    console.page.click(".actions a:text('Revoke')")
    expect(console.page.locator("h1")).to_contain_text(f"Revoke {victim}?")
    console.page.select_option("select[name=reason]", "keyCompromise")
    console.page.click("#confirm")
    expect(console.page).to_have_url(f"{console.base}/console/devices/{victim}?done=revoked")
    expect(console.page.locator("#device-state")).to_have_text("revoked")
    assert fleet.device_states([victim])[victim] == "revoked"
    assert _silent(fleet, victim), "the revoked device kept publishing"
    assert fleet.agent(victim).run_once().returncode != 0  # its reconnect is refused
    console.goto("/console/events?type=device.revoked")
    expect(console.page.locator("#events")).to_contain_text(f"device:{victim}")


@pytest.mark.skipif(
    os.environ.get("TF_SCREENSHOTS") != "1", reason="screenshots for docs/ only on request"
)
def test_screenshots_of_the_main_pages(console: ConsoleSession) -> None:
    console.page.set_viewport_size({"width": 1280, "height": 860})
    console.login_with_totp(console.add_operator("admin"))
    device = console.fleet.device_ids[1]
    pages = {
        "overview": "/console/",
        "devices": "/console/devices",
        "device": f"/console/devices/{device}",
        "campaigns": "/console/campaigns",
        "events": "/console/events",
        "users": "/console/users",
    }
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    for name, path in pages.items():
        console.goto(path)
        console.page.screenshot(path=str(DOCS_IMG / f"console-{name}.png"), full_page=False)
    console.goto("/console/campaigns")
    console.page.locator("#campaigns a").first.click()
    console.page.screenshot(path=str(DOCS_IMG / "console-campaign.png"))
