"""The device's MQTT 5 link: awscrt's mqtt5 client over mutual TLS 1.3 with the token key.

One :class:`MqttLink` is one awscrt client bound to one certificate. The agent builds a new
link after a re-enrollment; the :class:`~trustfleet.agent.outbox.Outbox` outlives it, so no
queued message is lost. Reconnection is awscrt's: exponential backoff with full jitter between
``backoff_initial_s`` and ``backoff_max_s`` (``ExponentialBackoffJitterMode.FULL``).

Publishing is driven by the caller (:meth:`MqttLink.pump`): messages are handed to awscrt only
while connected, at most ``max_in_flight`` at a time, and leave the outbox on their PUBACK.

:class:`Link` is what the agent needs of a link; :class:`MqttLink` and
:class:`~trustfleet.agent.link311.Mqtt311Link` (MQTT 3.1.1, ``[mqtt] protocol = "3.1.1"``)
both satisfy it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from awscrt import io as crt_io
from awscrt import mqtt5

from trustfleet.agent._tls import TokenKey, client_tls_context
from trustfleet.agent.outbox import Message, Outbox
from trustfleet.agent.settings import DeviceSettings, MqttSection
from trustfleet.crt import (
    PUBACK_OK,
    crt_reason,
    map_crt_errors,
    one_thread_bootstrap,
    suback_callback,
)
from trustfleet.errors import Unavailable
from trustfleet.wire import TopicKind, device_topic

__all__ = [
    "Link",
    "MqttLink",
    "await_connected",
    "next_generation",
    "socket_options",
    "topic",
]

logger = logging.getLogger(__name__)

_GENERATIONS = itertools.count(1)


def next_generation() -> int:
    """A new link's ``generation``, unique in the process whatever the link's MQTT version."""
    return next(_GENERATIONS)


def topic(device_id: str, leaf: str) -> str:
    """The device's topic of kind ``leaf`` (:func:`trustfleet.wire.device_topic`)."""
    return device_topic(device_id, leaf)


class Link(Protocol):
    """One client session of the device with one certificate, whatever the MQTT version."""

    generation: int
    """Names this link in the outbox (messages it has in flight)."""
    connections: int
    """Successful connections so far (reconnections included)."""
    last_error: str
    """Why the last connection attempt or connection failed ("" if none did)."""

    @property
    def connected(self) -> bool:
        """True between CONNACK and disconnection."""
        ...

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""

    def stop(self, *, timeout_s: float) -> None:
        """Disconnect and stop reconnecting; wait (bounded) until the client has stopped."""

    def pump(self) -> int:
        """Hand queued messages to the client while connected; how many were handed over."""
        ...

    def wait_connected(self, *, timeout_s: float, poll: Callable[[float], None]) -> None:
        """Wait until connected, polling with ``poll(seconds)``.

        Raises:
            Unavailable: Not connected within ``timeout_s``.
        """


class MqttLink:
    """One MQTT 5 client session for a device with one certificate.

    Args:
        settings: The device's settings.
        mqtt: The resolved ``[mqtt]`` section (see ``require_mqtt``).
        key: The identity key in the token.
        client_cert: The LDevID (PEM).
        outbox: Where messages to publish wait.
        on_command: Called (on an awscrt thread) with the raw payload of each command.
        on_ota_command: Called likewise for each command on ``ota/cmd`` (campaigns send
            ``update`` there; docs/ota.md). None: that topic is not subscribed.
        on_challenge: Called likewise for each attestation challenge on
            ``attest/challenge`` (docs/attestation.md). None: that topic is not subscribed.
        on_change: Called (on an awscrt thread) whenever the link's state changes.
    """

    def __init__(
        self,
        settings: DeviceSettings,
        *,
        mqtt: MqttSection,
        key: TokenKey,
        client_cert: Path,
        outbox: Outbox,
        on_command: Callable[[bytes], None],
        on_change: Callable[[], None],
        on_ota_command: Callable[[bytes], None] | None = None,
        on_challenge: Callable[[bytes], None] | None = None,
    ) -> None:
        self._device_id = settings.device.id
        self._mqtt = mqtt
        self._outbox = outbox
        self._on_command = on_command
        self._on_ota_command = on_ota_command
        self._on_challenge = on_challenge
        self._on_change = on_change
        self.generation = next_generation()
        self._lock = threading.Lock()
        self._connected = False
        self._stopped = threading.Event()
        self.connections = 0
        self.last_error = ""
        with map_crt_errors(
            "set up the MQTT client with the device key",
            hint="check [identity] in device.toml and the device token",
            code="agent.mqtt.setup",
        ):
            tls = client_tls_context(settings, client_cert=client_cert, key=key)
            self._client = mqtt5.Client(self._options(tls))

    def _options(self, tls: crt_io.ClientTlsContext) -> mqtt5.ClientOptions:
        m = self._mqtt
        return mqtt5.ClientOptions(
            host_name=m.host,
            port=m.port,
            tls_ctx=tls,
            bootstrap=one_thread_bootstrap(),
            socket_options=socket_options(m),
            connect_options=mqtt5.ConnectPacket(
                client_id=self._device_id,
                keep_alive_interval_sec=m.keepalive_s,
                maximum_packet_size=m.max_payload_bytes + 1024,
            ),
            session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            retry_jitter_mode=mqtt5.ExponentialBackoffJitterMode.FULL,
            min_reconnect_delay_ms=int(m.backoff_initial_s * 1000),
            max_reconnect_delay_ms=int(m.backoff_max_s * 1000),
            connack_timeout_ms=int(m.connect_timeout_s * 1000),
            ack_timeout_sec=m.ack_timeout_s,
            on_publish_callback_fn=_relay(self, "_on_publish"),
            on_lifecycle_event_connection_success_fn=_relay(self, "_on_connected"),
            on_lifecycle_event_connection_failure_fn=_relay(self, "_on_failure"),
            on_lifecycle_event_disconnection_fn=_relay(self, "_on_disconnected"),
            on_lifecycle_event_stopped_fn=_relay(self, "_on_stopped"),
            disable_metrics=True,  # else awscrt appends SDK details to the username
        )

    @property
    def connected(self) -> bool:
        """True between CONNACK and disconnection."""
        with self._lock:
            return self._connected

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        logger.info("connecting to mqtts://%s:%d as %s", self._mqtt.host, self._mqtt.port,
                    self._device_id)  # fmt: skip
        self._client.start()

    def stop(self, *, timeout_s: float) -> None:
        """Disconnect and stop reconnecting; wait (bounded) until the client has stopped."""
        self._client.stop(
            mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.NORMAL_DISCONNECTION)
        )
        if not self._stopped.wait(timeout_s):
            logger.warning("the MQTT client did not stop within %.1fs", timeout_s)

    def pump(self) -> int:
        """Hand queued messages to the client while connected; how many were handed over."""
        if not self.connected:
            return 0
        messages = self._outbox.take(generation=self.generation, limit=self._mqtt.max_in_flight)
        for message in messages:
            self._publish(message)
        return len(messages)

    def _publish(self, message: Message) -> None:
        packet = mqtt5.PublishPacket(
            topic=message.topic,
            payload=message.payload,
            qos=mqtt5.QoS.AT_LEAST_ONCE,
            payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
            content_type="application/json",
        )
        generation = self.generation
        try:
            with map_crt_errors(f"publish seq {message.seq}"):  # e.g. a stopped client
                future = self._client.publish(packet)
        except Unavailable as exc:
            logger.warning("%s", exc.one_line())
            self._outbox.settle(message, generation=generation, delivered=None)
            return
        outbox, wake = self._outbox, self._on_change
        future.add_done_callback(lambda f: _settle(outbox, message, generation, f, wake))

    def _subscribe(self) -> None:
        leaves: list[TopicKind] = ["cmd"]
        leaves += ["ota/cmd"] if self._on_ota_command is not None else []
        leaves += ["attest/challenge"] if self._on_challenge is not None else []
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(
                    topic_filter=topic(self._device_id, leaf), qos=mqtt5.QoS.AT_LEAST_ONCE
                )
                for leaf in leaves
            ]
        )
        future = self._client.subscribe(packet)
        future.add_done_callback(suback_callback(what="the command topics"))

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        handler = self._on_command if packet.topic == topic(self._device_id, "cmd") else None
        if packet.topic == topic(self._device_id, "ota/cmd"):
            handler = self._on_ota_command
        elif packet.topic == topic(self._device_id, "attest/challenge"):
            handler = self._on_challenge
        if handler is None:
            return
        payload = packet.payload
        raw = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        handler(raw)

    def _on_connected(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        # SUBSCRIBE is queued before any message may be published on this connection: the
        # broker handles them in order, so whoever sees our first message (agent.started) can
        # count on the command topics being subscribed.
        self._subscribe()
        with self._lock:
            self._connected = True
            self.connections += 1
        logger.info("connected to the broker (%s:%d)", self._mqtt.host, self._mqtt.port)
        self._on_change()

    def _on_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        self.last_error = crt_reason(data.exception) if data.exception else "connection refused"
        logger.warning("cannot connect to the broker: %s (retrying)", self.last_error)
        self._on_change()

    def _on_disconnected(self, data: mqtt5.LifecycleDisconnectData) -> None:
        with self._lock:
            self._connected = False
        reason = crt_reason(data.exception) if data.exception else "closed"
        logger.info("disconnected from the broker: %s", reason)
        self._on_change()

    def _on_stopped(self, data: mqtt5.LifecycleStoppedData) -> None:
        self._stopped.set()
        self._on_change()

    def wait_connected(self, *, timeout_s: float, poll: Callable[[float], None]) -> None:
        """Wait until connected, polling with ``poll(seconds)``.

        Raises:
            Unavailable: Not connected within ``timeout_s``.
        """
        await_connected(self, mqtt=self._mqtt, timeout_s=timeout_s, poll=poll)


def await_connected(
    link: Link, *, mqtt: MqttSection, timeout_s: float, poll: Callable[[float], None]
) -> None:
    """Wait until ``link`` is connected, polling with ``poll(seconds)`` (both links use it).

    Raises:
        Unavailable: Not connected within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not link.connected:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unavailable(
                f"cannot connect to the broker at {mqtt.host}:{mqtt.port}: "
                f"{link.last_error or 'no answer'}",
                hint="is the broker running, and is the device's LDevID valid?",
                code="agent.mqtt.connect",
            )
        poll(min(left, 0.2))


def _relay(link: MqttLink, method: str) -> Callable[[Any], None]:
    # awscrt's native client keeps its callbacks alive until it has terminated, and it
    # terminates only once the Python client is released: a strong reference from a callback
    # to the link (which holds the client) would keep the client, its TLS context and its
    # logged-in token session alive for ever. Hence a weak reference.
    ref = weakref.ref(link)

    def call(data: Any) -> None:
        target = ref()
        if target is not None:
            getattr(target, method)(data)

    return call


def _settle(
    outbox: Outbox, message: Message, generation: int, future: Future[Any], wake: Callable[[], None]
) -> None:
    exc = future.exception()
    if exc is not None:
        logger.debug("no PUBACK for seq %d: %s", message.seq, crt_reason(exc))
        outbox.settle(message, generation=generation, delivered=None)
    else:
        code = future.result().puback.reason_code
        ok = code in PUBACK_OK
        if not ok:
            logger.warning("the broker refused seq %d on %s: %s", message.seq, message.topic,
                           code)  # fmt: skip
        outbox.settle(message, generation=generation, delivered=ok)
    wake()


def socket_options(mqtt: MqttSection) -> crt_io.SocketOptions:
    """TCP options of a link: ``connect_timeout_s`` and TCP keep-alive (both links use it)."""
    options = crt_io.SocketOptions()
    options.connect_timeout_ms = int(mqtt.connect_timeout_s * 1000)
    options.keep_alive = True
    return options
