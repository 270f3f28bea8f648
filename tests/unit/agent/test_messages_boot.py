"""The agent names each message by (boot, seq): what the service deduplicates (docs/mqtt.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from trustfleet.agent._messages import new_boot_id, render
from trustfleet.services.ingest import parse_message

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_each_start_has_its_own_boot_id_the_service_accepts() -> None:
    boots = {new_boot_id() for _ in range(100)}
    assert len(boots) == 100
    boot = boots.pop()
    payload = render({"metrics": {"t": 1.0}}, seq=7, now=NOW, max_bytes=16384, boot=boot)
    assert json.loads(payload)["boot"] == boot
    message = parse_message("tf/v1/d/dev-00000001/telemetry", payload, now=NOW)
    assert (message.boot, message.seq) == (boot, 7)


def test_without_a_boot_id_the_payload_is_as_before() -> None:
    payload = render({"type": "heartbeat"}, seq=1, now=NOW, max_bytes=16384)
    assert set(json.loads(payload)) == {"ts", "seq", "type"}
