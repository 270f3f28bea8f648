"""What RabbitMQ holds for TrustFleet (broker/rabbitmq/_rules.py): device permissions as
regular expressions over routing keys, and the hashed CRL folder.

The expressions are checked the way RabbitMQ applies them (an unanchored search of the regex,
which is why every one is anchored here) against the routing keys its MQTT plugin makes of our
topics (``wire.amqp_routing_key``). Software keys stand in for the token keys.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustfleet.broker import BrokerCa
from trustfleet.broker.rabbitmq import crl_folder, device_permissions
from trustfleet.errors import Config
from trustfleet.pki import DEVICE_CA, IssuerContext, build_crl, issue_ca, make_root_ca
from trustfleet.wire import (
    DEVICE_TO_SERVICE,
    SERVICE_TO_DEVICE,
    amqp_routing_key,
    device_topic,
    topic_of_routing_key,
)

DEV = "dev-00000001"
OTHER = "dev-00000002"
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # only the files' contents are under test


def _allows(pattern: str, key: str) -> bool:
    return re.search(pattern, key) is not None  # RabbitMQ: re:run, unanchored


@pytest.mark.parametrize("kind", DEVICE_TO_SERVICE)
def test_a_device_writes_its_own_device_to_service_kinds(kind: str) -> None:
    rules = device_permissions(DEV)
    assert _allows(rules.topic_write, amqp_routing_key(device_topic(DEV, kind)))
    assert not _allows(rules.topic_read, amqp_routing_key(device_topic(DEV, kind)))


@pytest.mark.parametrize("kind", SERVICE_TO_DEVICE)
def test_a_device_reads_its_own_service_to_device_kinds(kind: str) -> None:
    rules = device_permissions(DEV)
    assert _allows(rules.topic_read, amqp_routing_key(device_topic(DEV, kind)))
    assert not _allows(rules.topic_write, amqp_routing_key(device_topic(DEV, kind)))


REFUSED_WRITES = {
    "other device": f"tf.v1.d.{OTHER}.telemetry",
    "prefix of another id": f"tf.v1.d.{DEV}0.telemetry",
    "service topic": "tf.v1.s.broker.stats",
    "below a kind": f"tf.v1.d.{DEV}.telemetry.x",
    "unknown kind": f"tf.v1.d.{DEV}.secrets",
    "a command (service to device)": f"tf.v1.d.{DEV}.cmd",
    "wildcard level": "tf.v1.d.*.telemetry",
    "multi-level wildcard": "tf.v1.d.#",
    "embedded in a longer key": f"x.tf.v1.d.{DEV}.telemetry",
    "dot in place of a level separator check": f"tf.v1.d.{DEV}.cmdXresult",
}


@pytest.mark.parametrize("key", REFUSED_WRITES.values(), ids=REFUSED_WRITES.keys())
def test_nothing_else_is_writable(key: str) -> None:
    assert not _allows(device_permissions(DEV).topic_write, key)


REFUSED_READS = {
    "every device": "tf.v1.d.*.cmd",
    "everything": "#",
    "own namespace wildcard": f"tf.v1.d.{DEV}.#",
    "other device": f"tf.v1.d.{OTHER}.cmd",
    "telemetry of itself": f"tf.v1.d.{DEV}.telemetry",
}


@pytest.mark.parametrize("key", REFUSED_READS.values(), ids=REFUSED_READS.keys())
def test_no_wide_subscription(key: str) -> None:
    assert not _allows(device_permissions(DEV).topic_read, key)


def test_quarantine_keeps_ota_and_attest_only() -> None:
    narrowed = device_permissions(DEV, quarantined=True)

    def key(kind: str) -> str:
        return amqp_routing_key(device_topic(DEV, kind))

    kept = {k for k in DEVICE_TO_SERVICE if _allows(narrowed.topic_write, key(k))}
    read = {k for k in SERVICE_TO_DEVICE if _allows(narrowed.topic_read, key(k))}
    assert kept == {"ota/status", "attest/evidence"}
    assert read == {"ota/cmd", "attest/challenge"}


def test_mqtt_session_queues_are_the_devices_own() -> None:
    rules = device_permissions(DEV)
    for qos in (0, 1):
        assert _allows(rules.configure, f"mqtt-subscription-{DEV}qos{qos}")
        assert _allows(rules.read, f"mqtt-subscription-{DEV}qos{qos}")
    assert _allows(rules.write, "amq.topic")
    assert not _allows(rules.configure, f"mqtt-subscription-{OTHER}qos1")
    assert not _allows(rules.read, f"mqtt-subscription-{OTHER}qos1")
    assert not _allows(rules.configure, "amq.topic")
    assert not _allows(rules.write, "amq.direct")


@pytest.mark.parametrize("bad", ["", "UPPER-CASE-ID", "dev.000001", "a" * 65, "x^.*$"])
def test_only_device_ids_get_permissions(bad: str) -> None:
    with pytest.raises(Config):
        device_permissions(bad)


def test_routing_keys_round_trip() -> None:
    for kind in (*DEVICE_TO_SERVICE, *SERVICE_TO_DEVICE):
        topic = device_topic(DEV, kind)
        assert topic_of_routing_key(amqp_routing_key(topic)) == topic
    assert amqp_routing_key("tf/v1/d/+/telemetry") == "tf.v1.d.*.telemetry"


def test_crl_folder_is_named_as_openssl_rehash_names_it(tmp_path: Path) -> None:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = IssuerContext(cert=make_root_ca(key=root_key, organization="T", now=NOW), key=root_key)
    cas = []
    for name in ("Device CA 1", "Device CA 2"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_ca(issuer=root, public_key=key.public_key(), common_name=name,
                        organization="T", profile=DEVICE_CA, now=NOW)  # fmt: skip
        crl = build_crl(issuer=IssuerContext(cert=cert, key=key), revoked=[], crl_number=1,
                        now=NOW, next_update=NOW + timedelta(days=1))  # fmt: skip
        cas.append(BrokerCa(cert=cert, crl_der=crl.public_bytes(serialization.Encoding.DER)))
    files = crl_folder(cas)
    assert len(files) == 2
    for name, pem in files.items():
        path = tmp_path / name
        path.write_bytes(pem)
        by_openssl = subprocess.run(
            ["openssl", "crl", "-hash", "-noout", "-in", str(path)],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        assert name == f"{by_openssl}.r0"
