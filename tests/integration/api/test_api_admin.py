"""Releases, campaigns, operators and API tokens through the management API (real server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from apikit import ApiKit, assert_problem

from conftest import Fleet
from support.sbom import write_sbom

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def release(api: ApiKit, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A staged build 1.0.0 of sim-v1 (``release build`` stays a CLI step), published by the API."""
    image = Path(tmp_path_factory.mktemp("release")) / "image.bin"
    image.write_bytes(bytes(range(256)) * 64)
    sbom = write_sbom(image.with_name("sbom.json"))
    built = api.server.cli(
        "release", "build", "--version", "1.0.0", "--image", image, "--sbom", sbom
    )
    assert built.returncode == 0, built.stderr
    body = {"model": "sim-v1", "version": "1.0.0"}
    before = api.last_event_id()
    published = api.post("/releases", body, role="release-manager")
    assert published.status_code == 201, published.text
    (event,) = api.events(after_id=before, type_="release.published")
    assert event.actor.startswith("operator:op-release-manager token:")
    assert event.origin.startswith("https POST /api/v1/releases from 127.0.0.1:")
    return body


def test_releases_are_listed_shown_and_published_once(api: ApiKit, release: dict[str, str]) -> None:
    listed = api.get("/releases", model="sim-v1").json()["items"]
    assert [(r["model"], r["version"]) for r in listed] == [("sim-v1", "1.0.0")]
    shown = api.get("/releases/sim-v1/1.0.0", role="auditor").json()
    assert shown["image_length"] == 256 * 64 and shown["targets_version"] >= 1
    assert_problem(api.get("/releases/sim-v1/9.9.9"), 404, "ota.release.not_found")
    again = api.post("/releases", release, role="release-manager")
    assert again.status_code == 409, again.text
    assert_problem(api.post("/releases", release, role="fleet-operator"), 403, "auth.forbidden")


def test_a_campaign_is_created_and_controlled(
    api: ApiKit, fleet: Fleet, release: dict[str, str]
) -> None:
    body = {"version": "1.0.0", "model": "sim-v1", "waves": [50, 100], "max_failure_rate": 0.5}
    before = api.last_event_id()
    made = api.post("/campaigns", body, role="release-manager")
    assert made.status_code == 201, made.text
    campaign = made.json()
    (event,) = api.events(after_id=before, type_="campaign.created")
    assert event.actor.startswith("operator:op-release-manager token:")
    assert campaign["state"] == "running" and campaign["waves"] == [50.0, 100.0]
    status = api.get(f"/campaigns/{campaign['id']}").json()
    assert status["campaign"]["id"] == campaign["id"]
    assert sum(w["devices"] for w in status["waves"]) == len(fleet.enrolled)
    devices = api.get(f"/campaigns/{campaign['id']}/devices", limit=2).json()
    assert len(devices["items"]) == 2 and devices["next_cursor"] == "2"
    listed = api.get("/campaigns").json()["items"]
    assert campaign["id"] in [c["id"] for c in listed]
    for action, state in (("pause", "paused"), ("resume", "running"), ("abort", "aborted")):
        done = api.post(f"/campaigns/{campaign['id']}/{action}", role="release-manager")
        assert done.status_code == 200 and done.json()["state"] == state, done.text
    assert api.post(f"/campaigns/{campaign['id']}/resume").status_code == 409
    assert_problem(api.get("/campaigns/cmp-nope"), 404, "campaign.not_found")


def test_operators_are_added_managed_and_listed(api: ApiKit) -> None:
    made = api.post("/users", {"login": "carol", "role": "fleet-operator"})
    assert made.status_code == 201, made.text
    assert made.json()["one_time_password"] and made.json()["operator"]["must_change_password"]
    assert api.post("/users", {"login": "carol", "role": "auditor"}).status_code == 409
    assert api.get("/users/carol", role="auditor").json()["role"] == "fleet-operator"
    changed = api.post("/users/carol/role", {"role": "auditor"}, method="PUT")
    assert changed.json()["role"] == "auditor"
    assert api.post("/users/carol/disable").json()["disabled"] is True
    assert api.post("/users/carol/enable").json()["disabled"] is False
    assert api.post("/users/carol/reset-mfa").json()["totp_enabled"] is False
    logins = [u["login"] for u in api.get("/users", role="auditor", limit=500).json()["items"]]
    assert "carol" in logins and "op-admin" in logins
    assert_problem(api.get("/users/nobody"), 404, "operator.not_found")
    denied = api.post("/users", {"login": "mallory", "role": "admin"}, role="auditor")
    assert_problem(denied, 403, "auth.forbidden")


def test_tokens_own_and_others(api: ApiKit) -> None:
    made = api.post("/tokens", {"name": "ci", "ttl_s": 600}, role="fleet-operator")
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert token["owner"] == "op-fleet-operator" and token["role"] == "fleet-operator"
    mine = api.get("/tokens", role="fleet-operator", limit=500).json()["items"]
    assert {t["owner"] for t in mine} == {"op-fleet-operator"}
    everyone = api.get("/tokens", role="auditor", limit=500).json()["items"]
    assert {"op-fleet-operator", "op-auditor"} <= {t["owner"] for t in everyone}
    wider = api.post("/tokens", {"name": "x", "role": "admin"}, role="fleet-operator")
    assert_problem(wider, 403, "token.role")
    others = api.post(f"/tokens/{token['id']}", role="auditor", method="DELETE")
    assert_problem(others, 404, "token.not_found")
    revoked = api.post(f"/tokens/{token['id']}", role="fleet-operator", method="DELETE")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api.post(f"/tokens/{token['id']}", method="DELETE").status_code == 200
