"""One service MQTT connection for many commands (a fleet re-key sends hundreds).

:func:`trustfleet.services.mqtt_client.publish_once` connects once per message; a command to a
whole fleet goes through one :class:`ServiceMqttClient` instead: connected once, every publish
QoS 1 and acknowledged (PUBACK) before the next. Like every service client it logs in to the
``tf-service`` token through awscrt, so use it from a process that does not also log in to that
token through python-pkcs11 (the CLI's device runtime, the API's workers).

On RabbitMQ (``[broker] kind = "rabbitmq"``, ADR 0024) the same client publishes through
``amq.topic`` over one AMQP connection, each message confirmed by the broker (publisher
confirms) before the next; the MQTT plugin delivers it to the device's subscription.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Final, Protocol

from awscrt import mqtt5

from trustfleet.crt import map_crt_errors, publish_and_wait
from trustfleet.services.amqp_client import AmqpEndpoint, AmqpPublisher
from trustfleet.services.mqtt_client import (
    CONNECT_TIMEOUT_S,
    ServiceMqttIdentity,
    new_client,
    publish_once,
)
from trustfleet.settings import ServerSettings

__all__ = ["OneShotServiceMqtt", "ServiceMqtt", "ServiceMqttClient"]

logger = logging.getLogger(__name__)

_HINT: Final = "is 'trustfleet server run' running?"


class ServiceMqtt(Protocol):
    """Publishes one message (QoS 1) and returns once the broker acknowledged it."""

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        """Publish ``payload`` on ``topic``.

        Raises:
            Unavailable: Not connected, refused, or not acknowledged in time.
        """
        ...


class _MqttLink:
    """Mosquitto: one awscrt MQTT 5 connection with the service identity."""

    def __init__(self, settings: ServerSettings, *, port: int | None, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._connected: Future[None] = Future()
        self._client = new_client(
            ServiceMqttIdentity.from_settings(settings, port=port), on_connected=self._on_connected
        )

    def _on_connected(self) -> None:
        if not self._connected.done():
            self._connected.set_result(None)

    def open(self) -> None:
        self._client.start()
        try:
            with map_crt_errors("connect to the broker", hint=_HINT):
                self._connected.result(timeout=self._timeout_s)
        except BaseException:
            self._client.stop()
            raise

    def close(self) -> None:
        self._client.stop()

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        publish_and_wait(self._client, packet, timeout_s=self._timeout_s, what=what, hint=_HINT)


class _AmqpLink:
    """RabbitMQ: one AMQP connection with publisher confirms."""

    def __init__(self, settings: ServerSettings) -> None:
        self._publisher = AmqpPublisher(AmqpEndpoint.from_settings(settings))

    def open(self) -> None:
        self._publisher.open()

    def close(self) -> None:
        self._publisher.close()

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        self._publisher.publish(topic, payload)


class ServiceMqttClient:
    """A connected service client (``with ServiceMqttClient(settings) as client: ...``).

    Args:
        settings: The server home (its service identity and broker).
        port: The broker port (default: from the settings; Mosquitto only).
        timeout_s: Bound on connecting and on each PUBACK (RabbitMQ: ``[rabbitmq]
            request_timeout_s``).

    Raises:
        Config: On RabbitMQ, no AMQP URL or no readable password file.
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        port: int | None = None,
        timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._link: _MqttLink | _AmqpLink = (
            _AmqpLink(settings)
            if settings.broker.kind == "rabbitmq"
            else _MqttLink(settings, port=port, timeout_s=timeout_s)
        )

    def __enter__(self) -> ServiceMqttClient:
        """Connect (bounded).

        Raises:
            Unavailable: The broker could not be reached in time.
        """
        self._link.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Disconnect, whatever ended the block."""
        self._link.close()

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        """Publish ``payload`` on ``topic`` (QoS 1) and wait for the PUBACK (RabbitMQ: the
        publisher confirm).

        Raises:
            Unavailable: Refused (``mqtt.puback``, ``broker.amqp``) or not acknowledged in time.
        """
        self._link.publish(topic, payload, what=what)


class OneShotServiceMqtt:
    """A :class:`ServiceMqtt` that connects for each message (one command from the API)."""

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings

    def publish(self, topic: str, payload: bytes, *, what: str) -> None:
        """Publish with :func:`~trustfleet.services.mqtt_client.publish_once`.

        Raises:
            Unavailable: The broker cannot be reached, refused, or did not acknowledge.
        """
        publish_once(self._settings, topic, payload, what=what)
