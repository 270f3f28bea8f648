"""Quarantine at the broker: a confined device keeps only its ``ota/`` and ``attest/`` topics.

Negative cases end with a marker the device may still publish (``ota/status``): the
subscriber stops at its first message, so a forbidden message would arrive before the marker.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from brokerkit_fixtures import Fleet, Mqtt


@pytest.fixture
def confined(fleet: Fleet, broker: Any) -> Iterator[str]:
    device = fleet.a.name
    broker.quarantine(device)
    broker.quarantine(device)  # idempotent
    try:
        yield device
    finally:
        broker.release(device)


def _first_message(mqtt: Mqtt, reader: Any, filters: list[str], publish: Any) -> str:
    sub = mqtt.sub(reader, filters, count=1, wait_s=8)
    try:
        assert sub.wait_subscribed(), sub.finish()
        publish()
        return sub.finish()
    finally:
        sub.close()


def test_quarantined_device_loses_telemetry_keeps_ota(
    fleet: Fleet, mqtt: Mqtt, broker: Any, confined: str
) -> None:
    assert confined in broker.quarantined()
    probe = f"probe-{secrets.token_hex(4)}"

    def publish() -> None:
        assert mqtt.pub(fleet.a, f"tf/v1/d/{confined}/telemetry", probe).returncode == 0
        assert mqtt.pub(fleet.a, f"tf/v1/d/{confined}/ota/status", "marker").returncode == 0

    output = _first_message(mqtt, fleet.service, [f"tf/v1/d/{confined}/#"], publish)
    assert "marker" in output
    assert probe not in output


def test_quarantined_device_gets_ota_commands_not_others(
    fleet: Fleet, mqtt: Mqtt, confined: str
) -> None:
    probe = f"probe-{secrets.token_hex(4)}"

    def publish() -> None:
        assert mqtt.pub(fleet.service, f"tf/v1/d/{confined}/cmd", probe).returncode == 0
        assert mqtt.pub(fleet.service, f"tf/v1/d/{confined}/ota/cmd", "marker").returncode == 0

    topics = [f"tf/v1/d/{confined}/cmd", f"tf/v1/d/{confined}/ota/cmd"]
    output = _first_message(mqtt, fleet.a, topics, publish)
    assert "marker" in output
    assert probe not in output


def test_other_devices_unaffected_and_release_restores(
    fleet: Fleet, mqtt: Mqtt, broker: Any
) -> None:
    device = fleet.a.name
    broker.quarantine(device)
    broker.release(device)
    broker.release(device)  # idempotent
    assert device not in broker.quarantined()
    probe = f"probe-{secrets.token_hex(4)}"

    def publish() -> None:
        assert mqtt.pub(fleet.a, f"tf/v1/d/{device}/telemetry", probe).returncode == 0

    output = _first_message(mqtt, fleet.service, [f"tf/v1/d/{device}/#"], publish)
    assert probe in output


def test_quarantine_refuses_non_device_names(broker: Any) -> None:
    from trustfleet.errors import Config

    with pytest.raises(Config):
        broker.quarantine("svc.ingest")
