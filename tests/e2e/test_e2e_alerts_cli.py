"""``trustfleet alerts`` through the installed CLI: list, show, ack, suppress with ``--json``,
and bad ids; alerts are raised in the home's store by the monitor's own service function."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.server import free_port, init_home, run_cli
from trustfleet.monitoring import Finding
from trustfleet.services.alerts import record_findings
from trustfleet.services.runtime import Runtime
from trustfleet.settings import load_server_settings

pytestmark = pytest.mark.e2e

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, list[int]]]:
    root = tmp_path_factory.mktemp("alerts-cli")
    home = root / "home"
    init_home(home, port=free_port())
    made = run_cli("factory", "provision", "--home", home, "--out", root / "devs", "--json")
    assert made.returncode == 0, made.stderr
    device_id = json.loads(made.stdout)["devices"][0]["device_id"]
    rt = Runtime.open(load_server_settings(home))
    try:
        findings = [
            Finding(device_id=device_id, kind=kind, severity=sev, detector="rule",
                    at=T0 + timedelta(minutes=n), summary=f"{kind} seen", evidence={"n": n})
            for n, (kind, sev) in enumerate(
                [("monitor.destination.new", "high"), ("monitor.port.new", "critical")]
            )
        ]  # fmt: skip
        ids = [c.alert_id for c in record_findings(rt, findings, now=T0)]
    finally:
        rt.close()
    yield home, device_id, ids


def _json(*args: object) -> object:
    result = run_cli(*map(str, args), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_show_ack_suppress(home: tuple[Path, str, list[int]]) -> None:
    path, device_id, (first, second) = home
    listed = _json("alerts", "list", "--home", path)
    assert isinstance(listed, dict)
    assert [a["id"] for a in listed["alerts"]] == [second, first]  # last seen first
    assert listed["next_cursor"] is None
    only = _json("alerts", "list", "--home", path, "--severity", "critical", "--device", device_id)
    assert isinstance(only, dict) and [a["kind"] for a in only["alerts"]] == ["monitor.port.new"]
    shown = _json("alerts", "show", second, "--home", path)
    assert isinstance(shown, dict)
    assert shown["state"] == "open" and shown["evidence"] == {"n": 1}
    # the built-in playbook: notify (no receivers configured), quarantine waits for approval
    assert [(a["action"], a["state"]) for a in shown["actions"]] == [
        ("notify", "done"), ("quarantine", "pending"),
    ]  # fmt: skip
    acked = _json("alerts", "ack", first, "--home", path)
    assert isinstance(acked, dict) and acked["state"] == "acknowledged"
    assert acked["updated_by"].startswith("operator:")
    again = run_cli("alerts", "ack", str(first), "--home", path)
    assert again.returncode != 0 and "acknowledged" in again.stderr
    quiet = _json("alerts", "suppress", second, "--for", "2h", "--home", path)
    assert isinstance(quiet, dict) and quiet["state"] == "suppressed" and quiet["suppressed_until"]
    rejected = _json("alerts", "reject", shown["actions"][1]["id"], "--home", path)
    assert isinstance(rejected, dict) and rejected["state"] == "rejected"
    table = run_cli("alerts", "list", "--home", path, env={"COLUMNS": "200"})
    assert table.returncode == 0 and "monitor.port.new" in table.stdout


def test_bad_ids(home: tuple[Path, str, list[int]]) -> None:
    path = home[0]
    missing = run_cli("alerts", "show", "424242", "--home", path, "--json")
    assert missing.returncode == 4 and "alert 424242 not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    word = run_cli("alerts", "show", "nope", "--home", path)
    assert word.returncode == 2 and "Traceback" not in word.stderr
    action = run_cli("alerts", "approve", "424242", "--home", path)
    assert action.returncode == 4 and "alerts show" in action.stderr
