"""The device's MQTT 3.1.1 link, for a broker without MQTT 5 (RabbitMQ 3.10's MQTT plugin).

:class:`Mqtt311Link` has the public surface of :class:`~trustfleet.agent.link.MqttLink` (the
agent picks it with ``[mqtt] protocol = "3.1.1"``) over awscrt's MQTT 3.1.1 ``Connection``:
the same TLS context (mutual TLS 1.3, the key in the token), the device id as client id, clean
session, QoS 1, messages handed over while connected (at most ``max_in_flight``) and leaving
the outbox when acknowledged. What differs in awscrt, and how this module absorbs it:

* awscrt reconnects a lost connection by itself (its delay doubles from
  ``backoff_initial_s`` to ``backoff_max_s``, in whole seconds), but a failed first connect is
  not retried: a thread of the link retries it, with exponential backoff and full jitter
  between ``backoff_initial_s`` and ``backoff_max_s``, until connected or stopped.
* A 3.1.1 PUBACK has no reason code: a completed publish was delivered; a failed one (no
  PUBACK: disconnection, ``ack_timeout_s``) is sent again.
* awscrt's Python API sends one SUBSCRIBE per topic filter: every one is queued before the
  link counts as connected, so the agent's first message still implies its subscriptions.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

from awscrt import mqtt as crt_mqtt

from trustfleet.agent._tls import TokenKey, client_tls_context
from trustfleet.agent.link import await_connected, next_generation, socket_options, topic
from trustfleet.agent.outbox import Message, Outbox
from trustfleet.agent.settings import DeviceSettings, MqttSection
from trustfleet.crt import crt_reason, map_crt_errors, one_thread_bootstrap, suback311_callback
from trustfleet.wire import TopicKind

__all__ = ["Mqtt311Link"]

logger = logging.getLogger(__name__)

_ATTEMPT_SLACK_S = 15.0
"""Beyond connect_timeout_s and the CONNACK wait: room for the TLS handshake with the token."""


class Mqtt311Link:
    """One MQTT 3.1.1 client session for a device with one certificate.

    Args:
        settings: The device's settings.
        mqtt: The resolved ``[mqtt]`` section (see ``require_mqtt``).
        key: The identity key in the token.
        client_cert: The LDevID (PEM).
        outbox: Where messages to publish wait.
        on_command: Called (on an awscrt thread) with the raw payload of each command.
        on_change: Called (on an awscrt thread or the link's) whenever the link's state changes.
        on_ota_command: Called likewise for each command on ``ota/cmd``. None: that topic is
            not subscribed.
        on_challenge: Called likewise for each attestation challenge on ``attest/challenge``.
            None: that topic is not subscribed.

    Raises:
        Unavailable: The TLS context or the client cannot be set up (``agent.mqtt.setup``).
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
        self._on_change = on_change
        wanted: dict[TopicKind, Callable[[bytes], None] | None] = {
            "cmd": on_command, "ota/cmd": on_ota_command, "attest/challenge": on_challenge,
        }  # fmt: skip
        self._handlers = {
            topic(self._device_id, leaf): handler
            for leaf, handler in wanted.items()
            if handler is not None
        }
        self.generation = next_generation()
        self.connections = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._connected = False
        self._close_asked = False
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        with map_crt_errors(
            "set up the MQTT client with the device key",
            hint="check [identity] in device.toml and the device token",
            code="agent.mqtt.setup",
        ):
            tls = client_tls_context(settings, client_cert=client_cert, key=key)
            self._connection = self._new_connection(crt_mqtt.Client(one_thread_bootstrap(), tls))
            self._connection.on_message(_relay(self, "_on_message"))

    def _new_connection(self, client: crt_mqtt.Client) -> crt_mqtt.Connection:
        m = self._mqtt
        reconnect_min_s = max(1, round(m.backoff_initial_s))  # awscrt counts whole seconds
        return crt_mqtt.Connection(
            client=client,
            host_name=m.host,
            port=m.port,
            client_id=self._device_id,
            clean_session=True,
            keep_alive_secs=m.keepalive_s,
            ping_timeout_ms=_ping_timeout_ms(m),
            protocol_operation_timeout_ms=m.ack_timeout_s * 1000,
            reconnect_min_timeout_secs=reconnect_min_s,
            reconnect_max_timeout_secs=max(reconnect_min_s, round(m.backoff_max_s)),
            socket_options=socket_options(m),
            use_websockets=False,
            on_connection_interrupted=_relay(self, "_on_interrupted"),
            on_connection_resumed=_relay(self, "_on_resumed"),
            on_connection_success=_relay(self, "_on_success"),
            on_connection_failure=_relay(self, "_on_failure"),
            on_connection_closed=_relay(self, "_on_closed"),
            disable_metrics=True,  # else awscrt appends SDK details to the username
        )

    @property
    def connected(self) -> bool:
        """True between CONNACK and disconnection."""
        with self._lock:
            return self._connected

    def start(self) -> None:
        """Start connecting (and, once connected, awscrt's reconnecting) in the background."""
        logger.info("connecting to mqtts://%s:%d as %s (MQTT 3.1.1)", self._mqtt.host,
                    self._mqtt.port, self._device_id)  # fmt: skip
        self._thread = threading.Thread(
            target=_connect_until_connected,
            args=(weakref.ref(self), self._stopping, self._mqtt),
            name=f"mqtt311-connect-{self.generation}",
            daemon=True,
        )
        self._thread.start()

    def stop(self, *, timeout_s: float) -> None:
        """Disconnect and stop reconnecting; wait (bounded) until the client has stopped.

        A first connect still under way is left to end (awscrt cannot cancel it); the link's
        thread then disconnects it. ``stop`` returns within about ``timeout_s`` either way.
        """
        deadline = time.monotonic() + timeout_s
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        if thread is None or not thread.is_alive():
            self._close()
        if not self._stopped.wait(max(deadline - time.monotonic(), 0.0)):
            logger.warning("the MQTT client did not stop within %.1fs", timeout_s)

    def pump(self) -> int:
        """Hand queued messages to the client while connected; how many were handed over."""
        if not self.connected:
            return 0
        messages = self._outbox.take(generation=self.generation, limit=self._mqtt.max_in_flight)
        for message in messages:
            self._publish(message)
        return len(messages)

    def wait_connected(self, *, timeout_s: float, poll: Callable[[float], None]) -> None:
        """Wait until connected, polling with ``poll(seconds)``.

        Raises:
            Unavailable: Not connected within ``timeout_s``.
        """
        await_connected(self, mqtt=self._mqtt, timeout_s=timeout_s, poll=poll)

    # -- awscrt -----------------------------------------------------------------------------

    def _publish(self, message: Message) -> None:
        # awscrt puts any failure in the future (a released connection included): settled there
        future, _packet_id = self._connection.publish(
            message.topic, message.payload, crt_mqtt.QoS.AT_LEAST_ONCE
        )
        generation, outbox, wake = self.generation, self._outbox, self._on_change
        future.add_done_callback(lambda f: _settle(outbox, message, generation, f, wake))

    def _subscribe(self) -> None:
        for name in self._handlers:
            future, _packet_id = self._connection.subscribe(name, crt_mqtt.QoS.AT_LEAST_ONCE)
            future.add_done_callback(suback311_callback(what=name))

    def _connect_once(self) -> bool:
        """One CONNECT, waited for (bounded); True when connected."""
        future = self._connection.connect()
        bound_s = self._mqtt.connect_timeout_s + _ping_timeout_ms(self._mqtt) / 1000
        done, _ = wait_futures([future], timeout=bound_s + _ATTEMPT_SLACK_S)
        if not done:
            self.last_error = "no answer"
            return False
        exc = future.exception()
        if exc is None:
            return True
        self.last_error = _connect_reason(exc)
        logger.debug("connect attempt failed: %s", self.last_error)
        return False

    def _close(self) -> None:
        """Ask awscrt to disconnect (once); stopped when it has, or when never connected."""
        with self._lock:
            if self._close_asked:
                return
            self._close_asked = True
            self._connected = False
        stopped = self._stopped
        future = self._connection.disconnect()  # awscrt puts any failure in the future
        # Done with an exception (not connected: the first connect never succeeded) or not,
        # nothing is left running: no reference to the link from the callback.
        future.add_done_callback(lambda _f: stopped.set())

    def _connection_up(self) -> None:
        with self._lock:
            if self._connected or self._stopping.is_set():
                return  # on_connection_resumed and on_connection_success: the first one acts
            # SUBSCRIBEs are queued before any message may be published on this connection:
            # the broker handles them in order, so whoever sees our first message
            # (agent.started) can count on the command topics being subscribed. Clean session:
            # the broker forgot them at every (re)connection.
            self._subscribe()
            self._connected = True
            self.connections += 1
        logger.info("connected to the broker (%s:%d, MQTT 3.1.1)", self._mqtt.host,
                    self._mqtt.port)  # fmt: skip
        self._on_change()

    def _on_success(self, callback_data: crt_mqtt.OnConnectionSuccessData, **_: Any) -> None:
        self._connection_up()

    def _on_resumed(self, session_present: bool, **_: Any) -> None:
        self._connection_up()  # a session is never present (clean session): resubscribes

    def _on_failure(self, callback_data: crt_mqtt.OnConnectionFailureData, **_: Any) -> None:
        error = callback_data.error
        self.last_error = crt_reason(error) if error else "connection refused"
        logger.warning("cannot connect to the broker: %s (retrying)", self.last_error)
        self._on_change()

    def _on_interrupted(self, error: BaseException | None, **_: Any) -> None:
        with self._lock:
            self._connected = False
        reason = crt_reason(error) if error else "closed"
        logger.info("disconnected from the broker: %s (reconnecting)", reason)
        self._on_change()

    def _on_closed(self, **_: Any) -> None:
        with self._lock:
            self._connected = False
        self._stopped.set()
        self._on_change()

    def _on_message(self, topic: str, payload: bytes, **_: Any) -> None:
        handler = self._handlers.get(topic)
        if handler is not None:
            handler(bytes(payload))


def _connect_until_connected(
    ref: weakref.ref[Mqtt311Link], stopping: threading.Event, mqtt_section: MqttSection
) -> None:
    """The link's thread: the first connect, retried until it succeeds or the link stops.

    Exponential backoff with full jitter: attempt n waits a uniform delay between
    ``backoff_initial_s`` and ``min(backoff_max_s, backoff_initial_s * 2**n)``. Only a weak
    reference to the link is held between attempts (see :func:`_relay`).
    """
    jitter = random.SystemRandom()
    initial_s, max_s = mqtt_section.backoff_initial_s, mqtt_section.backoff_max_s
    for attempt in itertools.count():
        link = ref()
        if link is None:
            return
        if link._connect_once() or stopping.is_set():
            if stopping.is_set():
                link._close()  # stop() may have left the attempt under way to this thread
            return
        del link
        cap_s = min(max_s, initial_s * 2 ** min(attempt, 32))
        if stopping.wait(jitter.uniform(initial_s, cap_s)):
            link = ref()
            if link is not None:
                link._close()  # stop() may have found this thread alive
            return


def _relay(link: Mqtt311Link, method: str) -> Callable[..., None]:
    # As in link.py: awscrt keeps its callbacks alive until its native connection has
    # terminated, which happens only once the Python connection is released. A strong
    # reference from a callback to the link (which holds the connection) would keep the
    # connection, its TLS context and its logged-in token session alive for ever.
    ref = weakref.ref(link)

    def call(**kwargs: Any) -> None:
        target = ref()
        if target is not None:
            getattr(target, method)(**kwargs)

    return call


def _settle(
    outbox: Outbox, message: Message, generation: int, future: Future[Any], wake: Callable[[], None]
) -> None:
    exc = future.exception()
    if exc is not None:  # no PUBACK: disconnection, timeout, cleared by a clean session
        logger.debug("no PUBACK for seq %d: %s", message.seq, crt_reason(exc))
        outbox.settle(message, generation=generation, delivered=None)
    else:  # a 3.1.1 PUBACK has no reason code: the broker took the message
        outbox.settle(message, generation=generation, delivered=True)
    wake()


def _ping_timeout_ms(m: MqttSection) -> int:
    # awscrt also waits this long for the CONNACK; it must stay below the keep-alive.
    return min(int(m.connect_timeout_s * 1000), m.keepalive_s * 1000 // 2)


def _connect_reason(exc: BaseException) -> str:
    code = exc.args[0] if exc.args else None
    if isinstance(code, crt_mqtt.ConnectReturnCode):  # awscrt: Exception(ConnectReturnCode)
        return f"refused by the broker ({code.name})"
    return crt_reason(exc)
