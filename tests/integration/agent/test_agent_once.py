"""``trustfleet agent run --once``: enroll a fresh device, publish, and an observer sees it."""

from __future__ import annotations

import json
import re

import pytest
from agentfleet import Fleet
from agentkit import Observer

from support.server import run_cli

pytestmark = pytest.mark.integration

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_agent_once_enrolls_and_publishes(fleet: Fleet) -> None:
    device = fleet.device()
    observer = Observer(
        port=fleet.broker_port, ca=fleet.ca_bundle, cert=fleet.service.cert,
        key=fleet.service.key, topics=[f"tf/v1/d/{device.name}/#"],
    )  # fmt: skip
    try:
        result = run_cli("agent", "run", "--device", device, "--once", "--json")
        assert result.returncode == 0, result.stderr
        done = json.loads(result.stdout)
        assert observer.wait_for(lambda m: len(m) >= 2), "".join(observer.raw)
    finally:
        observer.close()
    assert done["enrolled"] is True
    assert done["published"] == {"telemetry": 1, "events": 1}
    assert done["acked"] == 2
    assert done["ldevid_serial"]
    assert (device / "ldevid.pem").is_file()
    assert done["rss_kb"] > 0
    print(f"agent RSS after --once: {done['rss_kb']} KiB")
    (telemetry,) = observer.of("telemetry")
    (event,) = observer.of("events")
    assert TS.fullmatch(telemetry["ts"]) and TS.fullmatch(event["ts"])
    assert set(telemetry["metrics"]) == {"cpu_pct", "mem_rss_kb", "temperature_c", "uptime_s"}
    assert all(isinstance(v, int | float) for v in telemetry["metrics"].values())
    assert event["type"] == "heartbeat" and isinstance(event["details"], dict)
    assert sorted([telemetry["seq"], event["seq"]]) == [1, 2]
    # One boot id per start: the service stores (device, boot, seq) at most once.
    assert re.fullmatch(r"[0-9a-f]{16}", telemetry["boot"]) and event["boot"] == telemetry["boot"]
    assert "PIN" not in result.stderr and "pin" not in result.stderr.lower().replace("pinned", "")
