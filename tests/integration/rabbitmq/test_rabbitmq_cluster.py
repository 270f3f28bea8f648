"""A real two-node RabbitMQ 3.10 cluster: clustering, MQTT over TLS 1.3 with client
certificates, MQTT -> quorum queue across nodes, topic permissions, and revocation by CRL.

The clients are independent of the broker and of each other: paho-mqtt (driven by hand with
``loop()``, so it never reconnects behind a test's back) over Python's ``ssl`` contexts, and
pika for AMQP 0-9-1.
"""

from __future__ import annotations

import os
import secrets
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pytest
from cryptography.hazmat.primitives import serialization
from pika.adapters.blocking_connection import BlockingChannel

from support.mqtt311 import client_context, mqtt_session, tls_alert
from support.rabbitmq import PEM_CACHE_CLEAN_MS, RabbitCluster, RabbitNode
from support.rabbitmq_pki import ClientCert, TestCa, write_hashed_crl
from support.waiting import eventually, logged, wait_for
from trustfleet.sim.process import wait_until

pytestmark = pytest.mark.rabbitmq


@dataclass(frozen=True)
class Device:
    """A device identity: certificate, broker user, topics."""

    cert: ClientCert

    @property
    def cn(self) -> str:
        return self.cert.cn

    @property
    def telemetry(self) -> str:
        return f"tf/{self.cn}/telemetry"


@pytest.fixture
def new_device(rabbit: RabbitCluster, rabbit_pki: TestCa) -> Callable[[], Device]:
    """Make a device: a certificate of the test CA and a broker user that may publish and
    subscribe under ``tf/<cn>/`` only."""

    def make() -> Device:
        cn = f"dev-{secrets.token_hex(5)}"
        own = rf"^tf\.{cn}\..*$"
        rabbit.add_device_user(cn, write_topics=own, read_topics=own)
        return Device(rabbit_pki.client(cn))

    return make


def _tls(pki: TestCa, device: Device | None) -> ssl.SSLContext:
    return client_context(pki.ca_file, None if device is None else device.cert)


def test_cluster_status_lists_both_nodes_running(rabbit: RabbitCluster) -> None:
    want = {node.name for node in rabbit.nodes}
    assert len(want) == 2
    for node in rabbit.nodes:
        status = rabbit.ctl_json(node, "cluster_status")
        assert set(status["running_nodes"]) == want
        assert set(status["disk_nodes"]) == want


@pytest.mark.parametrize("index", [0, 1], ids=["node1", "node2"])
def test_device_with_certificate_connects_over_tls13(
    rabbit: RabbitCluster, rabbit_pki: TestCa, new_device: Callable[[], Device], index: int
) -> None:
    device, node = new_device(), rabbit.nodes[index]
    assert tls_alert(node.mqtt_tls_port, _tls(rabbit_pki, device)) is None
    with mqtt_session(node.mqtt_tls_port, _tls(rabbit_pki, device), client_id=device.cn) as s:
        assert s.connected, s.refused
        tls = s.client.socket()
        assert isinstance(tls, ssl.SSLSocket)
        assert tls.version() == "TLSv1.3"
        (conn,) = [c for c in rabbit.mqtt_connections(node) if c.client_id == device.cn]
        assert conn.user == device.cn  # certificate login: the user is the CN


def _no_cert(pki: TestCa, device: Device) -> ssl.SSLContext:
    return client_context(pki.ca_file, None)


def _unknown_ca(pki: TestCa, device: Device) -> ssl.SSLContext:
    other = TestCa(pki.folder / "other", name="TF Unknown CA")
    return client_context(pki.ca_file, other.client(device.cn))


def _tls12_only(pki: TestCa, device: Device) -> ssl.SSLContext:
    return client_context(pki.ca_file, device.cert, max_version=ssl.TLSVersion.TLSv1_2)


REFUSED = {  # the client's TLS context, and the alert the broker answers it with
    "no_client_certificate": (_no_cert, "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
    "client_certificate_of_unknown_ca": (_unknown_ca, "TLSV1_ALERT_UNKNOWN_CA"),
    "tls12_only_client": (_tls12_only, "TLSV1_ALERT_PROTOCOL_VERSION"),
}


@pytest.mark.parametrize(("make_context", "alert"), REFUSED.values(), ids=REFUSED.keys())
def test_client_is_refused(
    rabbit: RabbitCluster,
    rabbit_pki: TestCa,
    new_device: Callable[[], Device],
    make_context: Callable[[TestCa, Device], ssl.SSLContext],
    alert: str,
) -> None:
    device = new_device()
    ctx = make_context(rabbit_pki, device)
    for node in rabbit.nodes:
        assert tls_alert(node.mqtt_tls_port, ctx) == alert
        with mqtt_session(node.mqtt_tls_port, ctx, client_id=device.cn) as session:
            assert not session.connected
            assert session.refused
        assert device.cn not in {c.user for c in rabbit.mqtt_connections(node)}


@contextmanager
def _telemetry_queue(
    rabbit: RabbitCluster, node: RabbitNode
) -> Iterator[tuple[BlockingChannel, str]]:
    connection = pika.BlockingConnection(rabbit.amqp_parameters(node))
    try:
        channel = connection.channel()
        queue = f"tf-telemetry-{secrets.token_hex(4)}"
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(queue, "amq.topic", routing_key="tf.*.telemetry")
        try:
            yield channel, queue
        finally:
            channel.queue_delete(queue)
    finally:
        connection.close()


def test_mqtt_publish_on_node1_reaches_quorum_queue_consumed_on_node2(
    rabbit: RabbitCluster, rabbit_pki: TestCa, new_device: Callable[[], Device]
) -> None:
    device = new_device()
    node1, node2 = rabbit.nodes
    payload = secrets.token_bytes(24)
    with _telemetry_queue(rabbit, node2) as (channel, queue):
        queues = rabbit.ctl_json(node2, "list_queues", "name", "type", "durable")
        assert {"name": queue, "type": "quorum", "durable": True} in queues
        with mqtt_session(
            node1.mqtt_tls_port, _tls(rabbit_pki, device), client_id=device.cn
        ) as session:
            assert session.connected, session.refused
            assert session.publish(device.telemetry, payload)

        def fetch() -> tuple[Any, Any, bytes] | None:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            return None if method is None else (method, props, body)

        method, _props, body = wait_for(fetch, what="the telemetry message on node 2")
        assert body == payload
        assert method.routing_key == f"tf.{device.cn}.telemetry"
        assert method.redelivered is False
        channel.basic_ack(method.delivery_tag)
        assert channel.basic_get(queue, auto_ack=True) == (None, None, None)


def test_publish_to_another_devices_topic_closes_the_connection(
    rabbit: RabbitCluster, rabbit_pki: TestCa, new_device: Callable[[], Device]
) -> None:
    device, other = new_device(), new_device()
    node = rabbit.nodes[0]
    log_offset = node.log_file.stat().st_size
    with mqtt_session(node.mqtt_tls_port, _tls(rabbit_pki, device), client_id=device.cn) as s:
        assert s.connected, s.refused
        assert s.publish(device.telemetry, b"own topic")  # allowed
        assert not s.publish(other.telemetry, b"not mine")
        assert s.disconnected  # MQTT 3.1.1 has no NACK: 3.10 closes the connection
    # 3.10 says so in the node log only: access_refused, then an authorization failure.
    refusal = (
        f"access to topic 'tf.{other.cn}.telemetry' in exchange 'amq.topic' in vhost '/' "
        f"refused for user '{device.cn}'"
    )
    assert eventually(lambda: logged(node.log_file, refusal, after=log_offset), timeout_s=10)
    assert logged(node.log_file, "is closing due to an authorization failure", after=log_offset)


def test_revoked_certificate_is_refused_on_both_nodes_and_live_connection_closed(
    rabbit: RabbitCluster, rabbit_pki: TestCa, new_device: Callable[[], Device]
) -> None:
    device = new_device()
    node2 = rabbit.nodes[1]
    ctx = _tls(rabbit_pki, device)
    with mqtt_session(node2.mqtt_tls_port, ctx, client_id=device.cn) as live:
        assert live.connected, live.refused
        rabbit_pki.publish_crl(revoke=device.cert.serial)  # no reload: see support.rabbitmq
        for node in rabbit.nodes:
            assert tls_alert(node.mqtt_tls_port, ctx) == "SSLV3_ALERT_CERTIFICATE_REVOKED"
            with mqtt_session(node.mqtt_tls_port, ctx, client_id=f"{device.cn}-new") as again:
                assert not again.connected, f"revoked certificate accepted on {node.name}"
        # A new CRL does not end a connection made before it ...
        assert device.cn in {c.user for c in rabbit.mqtt_connections(node2)}
        assert live.publish(device.telemetry, b"still up")
        # ... rabbitmqctl close_connection on the node that holds it does.
        closed = rabbit.close_mqtt_connections(node2, user=device.cn, reason="certificate revoked")
        assert closed == 1
        assert live.pump(lambda: live.disconnected)
    assert eventually(
        lambda: device.cn not in {c.user for c in rabbit.mqtt_connections(node2)}, timeout_s=15
    )


def test_a_ca_added_to_the_bundle_is_trusted_without_a_restart(
    rabbit: RabbitCluster, rabbit_pki: TestCa, new_device: Callable[[], Device]
) -> None:
    """A CA rollover writes a new bundle (``ca.pem`` of the trust folder); with
    ``ssl_pem_cache_clean`` set the nodes trust it within that interval, no
    ``ssl:clear_pem_cache()`` needed (docs/deployment.md)."""
    second = TestCa(rabbit_pki.folder / "second", name="TF Second Device CA")
    device = new_device()
    cert = second.client(device.cn)  # the same device, moved to the new CA
    write_hashed_crl(rabbit_pki.crl_dir, second.crl().public_bytes(serialization.Encoding.PEM))
    ctx = client_context(rabbit_pki.ca_file, cert)
    assert all(tls_alert(n.mqtt_tls_port, ctx) == "TLSV1_ALERT_UNKNOWN_CA" for n in rabbit.nodes)
    original = rabbit_pki.ca_file.read_bytes()
    staging = rabbit_pki.ca_file.with_suffix(".tmp")
    staging.write_bytes(original + second.cert.public_bytes(serialization.Encoding.PEM))
    started = time.monotonic()
    os.replace(staging, rabbit_pki.ca_file)  # as the service writes it: atomically
    try:
        for node in rabbit.nodes:
            wait_until(lambda n=node: tls_alert(n.mqtt_tls_port, ctx) is None,
                       timeout_s=PEM_CACHE_CLEAN_MS / 1000 * 4 + 10, poll_s=0.5,
                       what=f"{node.name} trusting the new CA")  # fmt: skip
        print(f"\nnew CA trusted by both nodes after {time.monotonic() - started:.1f} s")
        with mqtt_session(rabbit.nodes[1].mqtt_tls_port, ctx, client_id=device.cn) as session:
            assert session.connected, session.refused
    finally:
        staging.write_bytes(original)
        os.replace(staging, rabbit_pki.ca_file)
