"""MQTT 3.1.1 test clients over TLS that a test drives by hand (paho-mqtt, no background loop).

Independent of the product's own clients: paho-mqtt over Python's ``ssl`` contexts, driven with
``loop()`` so it never reconnects behind a test's back (a refused or closed connection stays
visible), and a raw TLS probe that reports the alert a server answers with.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from support.rabbitmq_pki import ClientCert

__all__ = ["CONNECT_TIMEOUT_S", "MqttSession", "client_context", "mqtt_session", "tls_alert"]

CONNECT_TIMEOUT_S = 15.0


def client_context(
    ca_file: Path,
    client: ClientCert | None,
    *,
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
) -> ssl.SSLContext:
    """A client context trusting ``ca_file``, with ``client``'s certificate if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.minimum_version = min(ssl.TLSVersion.TLSv1_2, max_version)
    ctx.maximum_version = max_version
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def tls_alert(port: int, ctx: ssl.SSLContext, *, wait_s: float = 3.0) -> str | None:
    """The TLS alert the broker ends a handshake with (e.g. ``SSLV3_ALERT_CERTIFICATE_REVOKED``),
    or None when it accepted the client (then it waits for an MQTT CONNECT: nothing to read).

    In TLS 1.3 the server checks the client certificate after the client finished its side of
    the handshake, so its alert arrives at the first read.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(1)
        except ssl.SSLError as exc:
            return str(exc.reason)
        except TimeoutError:
            return None
    return None


@dataclass
class MqttSession:
    """A paho client on one broker port, and what happened to it."""

    client: mqtt.Client
    connected: bool = False
    refused: str | None = None
    disconnected: bool = False
    acked: set[int] = field(default_factory=set)
    granted: dict[int, list[int]] = field(default_factory=dict)
    """SUBACK return codes by message id (128: refused)."""
    received: list[tuple[str, bytes]] = field(default_factory=list)
    """Messages delivered to its subscriptions: (topic, payload)."""

    def pump(self, until: Callable[[], bool], *, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Run the client's network loop until ``until()`` or the connection ends."""
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline:
            if self.disconnected:
                break
            try:
                rc = self.client.loop(timeout=0.1)
            except (ssl.SSLError, OSError) as exc:
                self.refused = self.refused or f"{type(exc).__name__}: {exc}"
                self.disconnected = True
                break
            if rc != mqtt.MQTT_ERR_SUCCESS:
                self.refused = self.refused or f"loop: {mqtt.error_string(rc)}"
                self.disconnected = True
        return until()

    def publish(self, topic: str, payload: bytes) -> bool:
        """Publish at QoS 1; whether the broker acknowledged it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=1)
        return self.pump(lambda: info.mid in self.acked)

    def subscribe(self, topic_filter: str) -> bool:
        """Subscribe at QoS 1; whether the broker granted it (SUBACK without 128)."""
        _rc, mid = self.client.subscribe(topic_filter, qos=1)
        self.pump(lambda: mid in self.granted)
        return mid in self.granted and 128 not in self.granted[mid]


@contextmanager
def mqtt_session(port: int, ctx: ssl.SSLContext, *, client_id: str) -> Iterator[MqttSession]:
    """An MQTT 3.1.1 connection over TLS; ``connected`` or ``refused`` tell how it went."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.tls_set_context(ctx)
    session = MqttSession(client)

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        session.connected = not getattr(reason, "is_failure", True)
        if not session.connected:
            session.refused = f"CONNACK {reason}"

    def on_disconnect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        session.disconnected = True
        session.refused = session.refused or f"disconnected: {reason}"

    def on_publish(_c: object, _u: object, mid: int, _r: object, _p: object) -> None:
        session.acked.add(mid)

    def on_subscribe(_c: object, _u: object, mid: int, codes: list[Any], _p: object) -> None:
        session.granted[mid] = [int(getattr(c, "value", c)) for c in codes]

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        session.received.append((message.topic, bytes(message.payload)))

    client.on_connect, client.on_disconnect, client.on_publish = (
        on_connect, on_disconnect, on_publish,
    )  # fmt: skip
    client.on_subscribe, client.on_message = on_subscribe, on_message
    try:
        client.connect("localhost", port, keepalive=60)
    except (ssl.SSLError, OSError) as exc:
        session.refused = f"{type(exc).__name__}: {exc}"
        session.disconnected = True
    else:
        session.pump(lambda: session.connected)
    try:
        yield session
    finally:
        if not session.disconnected:
            client.disconnect()
        client.socket() and client.loop(timeout=0.1)
