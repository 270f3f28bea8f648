"""The fleet service's MQTT 5 client: awscrt, mutual TLS with the key in the service token.

The private key of the service identity (``[broker] service_key``) never leaves the
``tf-service`` token: awscrt's TLS context signs through PKCS#11. Run a client in a process
that does not also log in to that token through python-pkcs11 (a second login from the same
process conflicts): the ingest workers are their own processes for this reason.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from awscrt import io as crt_io
from awscrt import mqtt5

from trustfleet.crt import map_crt_errors, publish_and_wait
from trustfleet.keystore import PinSource, Pkcs11Uri, find_module, token_tls_context
from trustfleet.settings import ServerSettings
from trustfleet.wire import COMMAND_NAMES, device_topic, encode_command

__all__ = [
    "COMMAND_NAMES",
    "ServiceMqttIdentity",
    "command_payload",
    "new_client",
    "publish_once",
    "send_command",
]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 15.0


@dataclass(frozen=True)
class ServiceMqttIdentity:
    """Where the service connects and with which token key. Never logged: it holds the PIN."""

    host: str
    port: int
    identity: str
    module: Path
    conf: Path | None
    token: str
    key_label: str
    pin: str
    cert: Path
    trust: Path

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, *, port: int | None = None
    ) -> ServiceMqttIdentity:
        """Read the service identity of a home (its PIN from the URI's pin-source).

        Raises:
            Config: The key URI or its PIN source is wrong.
        """
        broker = settings.broker
        uri = Pkcs11Uri.parse(broker.service_key)
        pin = PinSource.parse(uri.pin_source or "", base_dir=settings.home).read()
        conf = settings.keystore.softhsm_conf
        return cls(
            host=broker.host,
            port=port or broker.port,
            identity=broker.service_identity,
            module=find_module(settings.keystore.module or None),
            conf=settings.path(conf) if conf else None,
            token=uri.token or "",
            key_label=uri.object or "",
            pin=pin,
            cert=settings.path(broker.service_cert),
            trust=settings.path("public/ca-bundle.pem"),
        )

    def __repr__(self) -> str:
        return f"ServiceMqttIdentity({self.identity!r}, {self.host}:{self.port})"


def _tls_context(ident: ServiceMqttIdentity) -> crt_io.ClientTlsContext:
    return token_tls_context(
        module=ident.module,
        conf=ident.conf,
        token=ident.token,
        key_label=ident.key_label,
        pin=ident.pin,
        cert=ident.cert,
        trust=ident.trust,
    )


def new_client(
    ident: ServiceMqttIdentity,
    *,
    client_id: str | None = None,
    on_publish: Callable[[mqtt5.PublishReceivedData], None] | None = None,
    on_connected: Callable[[], None] | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> mqtt5.Client:
    """An MQTT 5 client (not started) with the service identity.

    Args:
        ident: The identity and the broker address.
        client_id: The MQTT client id (default: identity plus random suffix).
        on_publish: Called on awscrt's thread for every received PUBLISH.
        on_connected: Called after every successful CONNACK.
        on_failure: Called with a short reason after a failed connection attempt.

    Raises:
        Unavailable: The TLS context cannot be built with the token key.
    """

    def connected(_data: mqtt5.LifecycleConnectSuccessData) -> None:
        if on_connected is not None:
            on_connected()

    def failed(data: mqtt5.LifecycleConnectFailureData) -> None:
        reason = str(getattr(data, "exception", "") or "connection failed")
        logger.debug("MQTT connection attempt failed: %s", reason)
        if on_failure is not None:
            on_failure(reason)

    options = mqtt5.ClientOptions(
        host_name=ident.host,
        port=ident.port,
        tls_ctx=_tls_context(ident),
        connect_options=mqtt5.ConnectPacket(
            client_id=client_id or f"{ident.identity}-{secrets.token_hex(4)}",
            keep_alive_interval_sec=30,
            # Without it Mosquitto allows 20 in flight to this one busy connection and drops
            # what overflows its queue, although the devices already got their PUBACK.
            receive_maximum=65535,
        ),
        session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
        min_reconnect_delay_ms=200,
        max_reconnect_delay_ms=5000,
        on_publish_callback_fn=on_publish,
        on_lifecycle_event_connection_success_fn=connected,
        on_lifecycle_event_connection_failure_fn=failed,
        # Else awscrt sends a username ("?SDK=...&Version=..."); the broker's guard refuses a
        # username that is not the certificate CN (docs/adr/0011-broker-guard.md).
        disable_metrics=True,
    )
    return mqtt5.Client(options)


def command_payload(name: str, args: Mapping[str, Any]) -> tuple[str, bytes]:
    """A command message (docs/mqtt.md): its id and its JSON payload.

    Raises:
        InvalidInput: Unknown command, or the payload is not JSON or too large.
    """
    return encode_command(name, args)


def publish_once(
    settings: ServerSettings,
    topic: str,
    payload: bytes,
    *,
    port: int | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
    what: str = "the message",
) -> None:
    """Publish one QoS 1 message with a short-lived service client and wait for its PUBACK.

    Call it from a process that has not logged in to the service token through python-pkcs11.
    On RabbitMQ (``[broker] kind = "rabbitmq"``) it publishes through ``amq.topic`` with a
    publisher confirm instead.

    Raises:
        Unavailable: The broker cannot be reached, refused the message, or did not acknowledge
            in time (code ``mqtt.puback`` or ``mqtt.unavailable``; ``broker.amqp``).
    """
    if settings.broker.kind == "rabbitmq":
        from trustfleet.services.amqp_client import AmqpEndpoint, AmqpPublisher  # noqa: PLC0415

        publisher = AmqpPublisher(AmqpEndpoint.from_settings(settings))
        try:
            publisher.publish(topic, payload)
        finally:
            publisher.close()
        return
    connected: Future[None] = Future()

    def on_connected() -> None:
        if not connected.done():
            connected.set_result(None)

    client = new_client(
        ServiceMqttIdentity.from_settings(settings, port=port), on_connected=on_connected
    )
    client.start()
    hint = "is 'trustfleet server run' running?"
    try:
        with map_crt_errors(f"send {what}", hint=hint):
            connected.result(timeout=timeout_s)
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        publish_and_wait(client, packet, timeout_s=timeout_s, what=what, hint=hint)
    finally:
        client.stop()


def send_command(
    settings: ServerSettings,
    device_id: str,
    name: str,
    args: Mapping[str, Any],
    *,
    port: int | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> str:
    """Publish a command on ``tf/v1/d/<device_id>/cmd`` (QoS 1) with a short-lived client.

    The device answers on ``…/cmd/result``, which the ingest workers receive. Call it from a
    process that has not logged in to the service token through python-pkcs11.

    Args:
        settings: The server home.
        device_id: The device.
        name: ``ping``, ``report`` or ``update`` (docs/mqtt.md).
        args: The command's arguments (a JSON object).
        port: The broker port (default: from the settings).
        timeout_s: Bound on connecting and on the broker's PUBACK.

    Returns:
        The command id.

    Raises:
        InvalidInput: Bad device id, command or arguments.
        Unavailable: The broker cannot be reached or did not acknowledge in time.
    """
    topic = device_topic(device_id, "cmd")  # InvalidInput (mqtt.device_id) for a bad id
    command_id, payload = command_payload(name, args)
    publish_once(
        settings,
        topic,
        payload,
        port=port,
        timeout_s=timeout_s,
        what=f"'{name}' to {device_id}",
    )
    logger.info("sent command %s (%s) to %s", command_id, name, device_id)
    return command_id
