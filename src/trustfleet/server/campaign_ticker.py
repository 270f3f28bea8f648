"""The campaign ticker: one process of ``server run`` that steps the update campaigns.

It holds one long-lived MQTT 5 client with the service identity (awscrt signs with the key in
the ``tf-service`` token) and never logs in to a token through python-pkcs11, which is why it
is a process of its own (see :mod:`trustfleet.services.mqtt_client`). Every ``[campaigns]
tick_s`` it calls :func:`trustfleet.services.campaigns.tick`; the ``update`` commands of one
campaign step are published together and acknowledged (PUBACK) before the step commits.
Campaign state is only in the store: a restarted ticker (or another server's) continues.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Final

from awscrt import mqtt5

from trustfleet.crt import check_puback, map_crt_errors
from trustfleet.errors import TrustFleetError, Unavailable
from trustfleet.server._worker_main import run_worker
from trustfleet.services.amqp_client import AmqpEndpoint, AmqpPublisher
from trustfleet.services.campaigns import tick
from trustfleet.services.mqtt_client import ServiceMqttIdentity, command_payload, new_client
from trustfleet.services.runtime import Runtime
from trustfleet.settings import ServerSettings
from trustfleet.wire import device_topic

__all__ = ["AmqpUpdateSender", "CampaignTicker", "MqttUpdateSender", "ticker_process_main"]

logger = logging.getLogger(__name__)

PUBACK_TIMEOUT_S: Final = 10.0
"""Bound on waiting for the broker's acknowledgements of one campaign step."""


class MqttUpdateSender:
    """Publishes ``update`` commands on one long-lived client; ``flush`` awaits the PUBACKs.

    Args:
        ident: The service identity and the broker address.
        timeout_s: Bound on one ``flush``.
    """

    def __init__(self, ident: ServiceMqttIdentity, *, timeout_s: float = PUBACK_TIMEOUT_S) -> None:
        self.connected = threading.Event()
        self._timeout_s = timeout_s
        self._pending: list[Future[Any]] = []
        self._client = new_client(
            ident,
            client_id=f"{ident.identity}-campaigns-{uuid.uuid4().hex[:8]}",
            on_connected=self.connected.set,
            on_failure=lambda _reason: self.connected.clear(),
        )

    def start(self) -> None:
        """Start connecting (and reconnecting) in awscrt's threads."""
        self._client.start()

    def stop(self) -> None:
        """Disconnect."""
        self._client.stop()

    def __call__(self, device_id: str, args: dict[str, Any]) -> None:
        """Publish ``{"id", "name": "update", "args"}`` on the device's ``ota/cmd`` (QoS 1).

        Raises:
            InvalidInput: Not a device id, or the command is too large.
            Unavailable: Not connected to the broker.
        """
        topic = device_topic(device_id, "ota/cmd")  # InvalidInput (mqtt.device_id)
        if not self.connected.is_set():
            raise Unavailable("not connected to the MQTT broker", code="mqtt.unavailable")
        _command_id, payload = command_payload("update", args)
        packet = mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)
        with map_crt_errors("publish an update command"):
            self._pending.append(self._client.publish(packet))

    def flush(self) -> None:
        """Wait for every publish since the last flush to be acknowledged.

        Raises:
            Unavailable: One was refused, failed or not acknowledged in time.
        """
        pending, self._pending = self._pending, []
        for future in pending:
            with map_crt_errors("get the update commands acknowledged"):
                result = future.result(timeout=self._timeout_s)
            check_puback(result, what="an update command")


class AmqpUpdateSender:
    """Publishes ``update`` commands through RabbitMQ's ``amq.topic`` (``[broker] kind =
    "rabbitmq"``); each publish returns once the broker confirmed it, so ``flush`` has nothing
    left to wait for. Same calls as :class:`MqttUpdateSender`.
    """

    def __init__(self, endpoint: AmqpEndpoint) -> None:
        self.connected = threading.Event()
        self._publisher = AmqpPublisher(endpoint)

    def start(self) -> None:
        """Count as connected: the first publish connects (and reports if it cannot)."""
        self.connected.set()

    def stop(self) -> None:
        """Close the connection."""
        self._publisher.close()

    def __call__(self, device_id: str, args: dict[str, Any]) -> None:
        """Publish the command on the device's ``ota/cmd``, confirmed by the broker.

        Raises:
            InvalidInput: Not a device id, or the command is too large.
            Unavailable: No node, or no confirmation.
        """
        topic = device_topic(device_id, "ota/cmd")
        _command_id, payload = command_payload("update", args)
        self._publisher.publish(topic, payload)

    def flush(self) -> None:
        """Nothing: every publish was confirmed when it returned."""


class CampaignTicker:
    """Steps every running campaign each ``[campaigns] tick_s``.

    Args:
        settings: The server home.
        rt: The runtime (store only: no key is opened).
        port: The broker port (default: from the settings).
    """

    def __init__(self, settings: ServerSettings, *, rt: Runtime, port: int | None = None) -> None:
        self.settings = settings
        self.rt = rt
        self.sender: MqttUpdateSender | AmqpUpdateSender = (
            AmqpUpdateSender(AmqpEndpoint.from_settings(settings))
            if settings.broker.kind == "rabbitmq"
            else MqttUpdateSender(ServiceMqttIdentity.from_settings(settings, port=port))
        )

    def run(self, stop: threading.Event) -> None:
        """Connect, then tick until ``stop`` is set."""
        self.sender.start()
        interval_s = self.settings.campaigns.tick_s
        try:
            while not stop.wait(interval_s):
                if not self.sender.connected.is_set():
                    continue  # nothing could be sent: keep devices pending, decide later
                try:
                    result = tick(
                        self.rt,
                        now=datetime.now(UTC),
                        send=self.sender,
                        flush=self.sender.flush,
                    )
                except TrustFleetError as exc:
                    logger.warning("campaign tick failed: %s", exc.one_line())
                    continue
                if result.notified or result.halted or result.completed or result.advanced:
                    logger.info("campaign tick: %s", result)
        finally:
            self.sender.stop()


def ticker_process_main(home: str, port: int) -> None:
    """Entry point of the ticker process (``multiprocessing`` spawn target).

    Args:
        home: The server home.
        port: The broker port.
    """
    run_worker(
        home,
        lambda rt, stop: CampaignTicker(rt.settings, rt=rt, port=port).run(stop),
        role="campaigns",
    )
