"""broker.rabbitmq.RabbitBroker against a real two-node RabbitMQ 3.10 cluster.

The adapter keeps device users, narrows a quarantined device, writes the trust folder the nodes
read and closes revoked devices' connections, through the management API only. Devices are
paho-mqtt 3.1.1 clients (tests/support/mqtt311.py) with certificates of the session's test CA;
the topics are TrustFleet's (``tf/v1/d/<id>/…``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from support.mqtt311 import MqttSession, client_context, mqtt_session, tls_alert
from support.rabbitmq import RabbitCluster, RabbitNode
from support.rabbitmq_pki import ClientCert, TestCa
from trustfleet.broker import BrokerCa
from trustfleet.broker.rabbitmq import (
    CA_BUNDLE,
    CRL_DIR,
    DEVICE_TAG,
    ManagementEndpoint,
    RabbitBroker,
    RabbitConfig,
)
from trustfleet.errors import Unavailable
from trustfleet.services.service_mqtt import ServiceMqttClient
from trustfleet.settings import ServerSettings
from trustfleet.sim.process import free_port
from trustfleet.wire import device_topic

pytestmark = pytest.mark.rabbitmq

CLOSE_WITHIN_S = 20.0  # the management API lists a connection a few seconds after it is made


def _config(rabbit: RabbitCluster, pki: TestCa, urls: list[str] | None = None) -> RabbitConfig:
    endpoint = ManagementEndpoint(
        urls=urls or [f"http://127.0.0.1:{n.mgmt_port}" for n in rabbit.nodes],
        username=rabbit.admin_user,
        password=rabbit.admin_password,
        timeout_s=5.0,
    )
    return RabbitConfig(endpoint=endpoint, vhost="/", trust_dirs=[pki.folder], root_ca=pki.ca_file)


@pytest.fixture
def broker(rabbit: RabbitCluster, rabbit_pki: TestCa) -> RabbitBroker:
    return RabbitBroker(_config(rabbit, rabbit_pki))


@pytest.fixture
def device(rabbit_pki: TestCa) -> Callable[[], ClientCert]:
    return lambda: rabbit_pki.client(f"dev-{secrets.token_hex(6)}")


@pytest.fixture
def connect(
    rabbit_pki: TestCa,
) -> Iterator[Callable[[RabbitNode, ClientCert], MqttSession]]:
    from contextlib import ExitStack

    with ExitStack() as stack:

        def open_session(node: RabbitNode, cert: ClientCert) -> MqttSession:
            ctx = client_context(rabbit_pki.ca_file, cert)
            return stack.enter_context(mqtt_session(node.mqtt_tls_port, ctx, client_id=cert.cn))

        yield open_session


def _closed(session: MqttSession, broker: RabbitBroker) -> bool:
    """Pump the client while the adapter follows its kicks up, until the broker closes it."""
    deadline = time.monotonic() + CLOSE_WITHIN_S
    while not session.disconnected and time.monotonic() < deadline:
        broker.follow_up()
        session.pump(lambda: session.disconnected, timeout_s=1.0)
    return session.disconnected


def test_sync_admits_enrolled_devices_and_removes_the_rest(
    rabbit: RabbitCluster,
    broker: RabbitBroker,
    device: Callable[[], ClientCert],
    connect: Callable[[RabbitNode, ClientCert], MqttSession],
) -> None:
    a, b = device(), device()
    report = broker.sync_devices({a.cn, b.cn} | broker.api.users(tag=DEVICE_TAG))
    assert {a.cn, b.cn} <= set(report.added)
    assert {a.cn, b.cn} <= broker.api.users(tag=DEVICE_TAG)
    for node in rabbit.nodes:
        session = connect(node, a)
        assert session.connected, session.refused
        assert session.publish(device_topic(a.cn, "telemetry"), b"{}")
        assert session.publish(device_topic(a.cn, "ota/status"), b"{}")
    intruder = connect(rabbit.nodes[1], a)
    assert intruder.connected
    assert not intruder.publish(device_topic(b.cn, "telemetry"), b"{}")  # another's topic
    assert intruder.disconnected
    others = broker.api.users(tag=DEVICE_TAG) - {a.cn}
    report = broker.sync_devices(others)  # a is no longer enrolled
    assert report.removed == (a.cn,)
    assert a.cn not in broker.api.users(tag=DEVICE_TAG)
    gone = connect(rabbit.nodes[0], a)
    assert not gone.connected  # no user any more: refused at CONNECT
    assert broker.sync_devices(others) == type(report)()  # nothing left to change


def test_quarantine_keeps_ota_and_attest_and_release_restores(
    rabbit: RabbitCluster,
    broker: RabbitBroker,
    device: Callable[[], ClientCert],
    connect: Callable[[RabbitNode, ClientCert], MqttSession],
) -> None:
    a = device()
    broker.admit(a.cn)
    node1, node2 = rabbit.nodes
    live = connect(node2, a)
    assert live.connected, live.refused
    assert live.publish(device_topic(a.cn, "telemetry"), b"{}")
    broker.quarantine(a.cn)
    assert a.cn in broker.quarantined()
    assert _closed(live, broker)  # it comes back under the narrower rule
    narrowed = connect(node1, a)
    assert narrowed.connected, narrowed.refused
    assert narrowed.publish(device_topic(a.cn, "ota/status"), b"{}")
    assert narrowed.publish(device_topic(a.cn, "attest/evidence"), b"{}")
    assert not narrowed.publish(device_topic(a.cn, "telemetry"), b"{}")
    broker.release(a.cn)
    assert a.cn not in broker.quarantined()
    restored = connect(node2, a)
    assert restored.connected, restored.refused
    assert restored.publish(device_topic(a.cn, "telemetry"), b"{}")


def _crl_der(pki: TestCa) -> bytes:
    return pki.crl().public_bytes(serialization.Encoding.DER)


def test_revocation_refuses_new_handshakes_on_both_nodes_and_closes_the_live_one(
    rabbit: RabbitCluster,
    rabbit_pki: TestCa,
    broker: RabbitBroker,
    device: Callable[[], ClientCert],
    connect: Callable[[RabbitNode, ClientCert], MqttSession],
) -> None:
    a, bystander = device(), device()
    broker.admit(a.cn)
    broker.admit(bystander.cn)
    broker.start(trust=[BrokerCa(cert=rabbit_pki.cert, crl_der=_crl_der(rabbit_pki))])
    assert (rabbit_pki.folder / CA_BUNDLE).read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    live = connect(rabbit.nodes[1], a)
    assert live.connected, live.refused
    rabbit_pki.revoked[a.serial] = datetime.now(UTC) - timedelta(seconds=5)
    broker.reload_trust([BrokerCa(cert=rabbit_pki.cert, crl_der=_crl_der(rabbit_pki))])
    assert len(list((rabbit_pki.folder / CRL_DIR).iterdir())) == 1
    broker.kick(a.cn)
    assert _closed(live, broker)
    for node in rabbit.nodes:  # no reload: the nodes read the CRL folder at each handshake
        ctx = client_context(rabbit_pki.ca_file, a)
        assert tls_alert(node.mqtt_tls_port, ctx) == "SSLV3_ALERT_CERTIFICATE_REVOKED"
        assert tls_alert(node.mqtt_tls_port, client_context(rabbit_pki.ca_file, bystander)) is None


def test_no_management_api_is_unavailable_with_a_hint(
    rabbit: RabbitCluster, rabbit_pki: TestCa
) -> None:
    dead = RabbitBroker(_config(rabbit, rabbit_pki, urls=[f"http://127.0.0.1:{free_port()}"]))
    with pytest.raises(Unavailable) as caught:
        dead.sync_devices({"dev-000000000001"})
    assert caught.value.code == "broker.rabbitmq.unavailable"
    assert "management_urls" in (caught.value.hint or "")


def _service_settings(rabbit: RabbitCluster, home: Path, amqp_ports: list[int]) -> ServerSettings:
    """A home whose broker is the cluster: ``[broker] kind = "rabbitmq"`` and its password file."""
    password = home / "secrets" / "rabbitmq.password"
    password.parent.mkdir(parents=True)
    password.write_text(rabbit.admin_password)
    password.chmod(0o600)
    return ServerSettings(
        home=home, ca={}, broker={"kind": "rabbitmq"},
        rabbitmq={"amqp_urls": [f"amqp://127.0.0.1:{p}" for p in amqp_ports],
                  "username": rabbit.admin_user, "request_timeout_s": 3.0},
    )  # fmt: skip


def test_the_service_client_sends_commands_over_amqp_to_the_device(
    rabbit: RabbitCluster,
    broker: RabbitBroker,
    device: Callable[[], ClientCert],
    connect: Callable[[RabbitNode, ClientCert], MqttSession],
    tmp_path: Path,
) -> None:
    """What a fleet re-key or a CA rollover sends (one connection, each command confirmed)
    reaches the device subscribed on the other node, in order."""
    a = device()
    broker.admit(a.cn)
    session = connect(rabbit.nodes[1], a)
    assert session.connected, session.refused
    topic = device_topic(a.cn, "cmd")
    assert session.subscribe(topic)
    sent = [f'{{"n":{n}}}'.encode() for n in range(3)]
    settings = _service_settings(rabbit, tmp_path, [rabbit.nodes[0].amqp_port])
    with ServiceMqttClient(settings) as client:
        for payload in sent:
            client.publish(topic, payload, what="a command")
    assert session.pump(lambda: len(session.received) >= len(sent), timeout_s=10.0)
    assert session.received == [(topic, p) for p in sent]


def test_the_service_client_without_a_node_is_unavailable(
    rabbit: RabbitCluster, tmp_path: Path
) -> None:
    settings = _service_settings(rabbit, tmp_path, [free_port()])
    with pytest.raises(Unavailable) as caught, ServiceMqttClient(settings):
        pass
    assert caught.value.code == "broker.amqp"
    assert "amqp_urls" in (caught.value.hint or "")
