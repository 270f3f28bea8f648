"""Who may connect to the broker, and what each identity may read and write.

Negative cases end with a marker: after the forbidden message has been acknowledged by the
broker (QoS 1), a message the subscriber may see is published; the subscriber stops at the
first message, so the forbidden one would have arrived before the marker if it were allowed.
A device has one connection at a time (its client id is its id), so a device's marker comes
from the service, on the device's ``cmd``.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from typing import Any

import pytest
from brokerkit_fixtures import Fleet, Identity, Mqtt


@pytest.mark.parametrize(
    ("who", "tls_version"),
    [
        ("none", "tlsv1.3"),
        ("foreign", "tlsv1.3"),
        ("idevid_chain", "tlsv1.3"),
    ],
    ids=["no_client_cert", "foreign_ca", "idevid_via_manufacturing_ca"],
)
def test_connection_refused(fleet: Fleet, mqtt: Mqtt, who: str, tls_version: str) -> None:
    identity = (
        Identity("none", fleet.a.cert.with_name("none"), fleet.a.key)
        if who == "none"
        else getattr(fleet, who)
    )
    result = mqtt.pub(identity, f"tf/v1/d/{identity.name}/telemetry", "x", tls_version=tls_version)
    assert result.returncode != 0, result


def test_tls12_refused(fleet: Fleet, mqtt: Mqtt) -> None:
    # mosquitto_sub --tls-version tlsv1.2 means "1.2 or later" (libmosquitto sets only
    # SSL_OP_NO_TLSv1_1 and below), so it would negotiate 1.3; cap the client at 1.2 here.
    ctx = ssl.create_default_context(cafile=str(fleet.server.ca_bundle))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(fleet.a.cert), str(fleet.a.key))
    with (
        socket.create_connection(("127.0.0.1", mqtt.port), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost").close()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    with (
        socket.create_connection(("127.0.0.1", mqtt.port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"


def test_own_namespace_round_trip(fleet: Fleet, mqtt: Mqtt) -> None:
    # One connection per device (its client id is its id): the service is the other end.
    topic = f"tf/v1/d/{fleet.a.name}/telemetry"
    sub = mqtt.sub(fleet.service, [topic], count=1, wait_s=10)
    try:
        assert sub.wait_subscribed(), sub.finish()
        assert mqtt.pub(fleet.a, topic, "own-ok").returncode == 0
        assert "own-ok" in sub.finish()
    finally:
        sub.close()


# (subscriber, its filters, publisher, topic published, delivered?)
CASES: list[tuple[str, list[str], str, str, bool]] = [
    ("a", ["tf/v1/d/{b}/#"], "b", "tf/v1/d/{b}/telemetry", False),
    ("b", ["tf/v1/d/{b}/cmd"], "a", "tf/v1/d/{b}/cmd", False),
    ("a", ["#"], "b", "tf/v1/d/{b}/telemetry", False),
    ("a", ["$SYS/#"], "", "", False),
    ("a", ["tf/v1/d/{a}/cmd"], "service", "tf/v1/d/{a}/cmd", True),
    ("a", ["tf/v1/d/{a}/telemetry"], "service", "tf/v1/d/{a}/telemetry", False),
    ("service", ["tf/v1/d/+/events"], "b", "tf/v1/d/{b}/events", True),
]
IDS = [
    "a_cannot_read_b",
    "a_cannot_write_b_cmd",
    "a_cannot_read_all",
    "a_cannot_see_sys",
    "service_writes_cmd",
    "service_cannot_forge_telemetry",
    "service_reads_all",
]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_isolation(
    fleet: Fleet,
    mqtt: Mqtt,
    case: tuple[str, list[str], str, str, bool],
) -> None:
    subscriber, filters, publisher, topic, delivered = case
    names: dict[str, Any] = {"a": fleet.a.name, "b": fleet.b.name}
    reader: Identity = getattr(fleet, subscriber)
    marker_owner = fleet.a if subscriber == "service" else fleet.service
    leaf = "marker" if subscriber == "service" else "cmd"
    marker_topic = f"tf/v1/d/{(fleet.a if subscriber == 'service' else reader).name}/{leaf}"
    payload = f"probe-{secrets.token_hex(4)}"
    sub = mqtt.sub(reader, [f.format(**names) for f in filters] + [marker_topic], count=2, wait_s=8)
    try:
        assert sub.wait_subscribed(), sub.finish()
        if publisher:
            result = mqtt.pub(getattr(fleet, publisher), topic.format(**names), payload)
            assert result.returncode == 0, result.stderr  # a denied PUBLISH is acked, dropped
        assert mqtt.pub(marker_owner, marker_topic, "marker").returncode == 0
        assert mqtt.pub(marker_owner, marker_topic, "marker").returncode == 0
        output = sub.finish()
    finally:
        sub.close()
    assert "marker" in output
    assert (payload in output) is delivered, output
    assert "$SYS" not in output.replace("Topic: $SYS/#", "")


def test_service_shared_subscription_sees_every_device(fleet: Fleet, mqtt: Mqtt) -> None:
    sub = mqtt.sub(
        fleet.service, ["$share/ingest/tf/v1/d/+/telemetry"], count=2, wait_s=10, v5=True
    )
    try:
        assert sub.wait_subscribed(), sub.finish()
        for device in (fleet.a, fleet.b):
            assert mqtt.pub(device, f"tf/v1/d/{device.name}/telemetry", device.name).returncode == 0
        output = sub.finish()
    finally:
        sub.close()
    assert f"tf/v1/d/{fleet.a.name}/telemetry {fleet.a.name}" in output
    assert f"tf/v1/d/{fleet.b.name}/telemetry {fleet.b.name}" in output
