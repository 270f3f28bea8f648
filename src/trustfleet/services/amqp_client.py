"""The service's AMQP 0-9-1 side of a RabbitMQ cluster (``[broker] kind = "rabbitmq"``).

Device messages reach the service through durable *quorum* queues bound to ``amq.topic`` (where
RabbitMQ's MQTT plugin publishes them): every service host's ingest workers consume the same
queue, each message goes to one of them, and it is acknowledged only once stored, so a worker
or a node that dies loses nothing (the queue is replicated across the nodes). Commands to
devices are published to ``amq.topic`` with publisher confirms. pika's errors are translated
here, once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import pika
import pika.exceptions

from trustfleet.errors import Config, Unavailable
from trustfleet.settings import ServerSettings
from trustfleet.wire import amqp_routing_key, topic_of_routing_key

__all__ = [
    "AMQP_ERRORS",
    "MAX_PASSWORD_BYTES",
    "TOPIC_EXCHANGE",
    "AmqpEndpoint",
    "AmqpPublisher",
    "Delivery",
    "amqp_errors",
    "connect",
    "consume_forever",
    "declare_group_queue",
]

logger = logging.getLogger(__name__)

TOPIC_EXCHANGE: Final = "amq.topic"
"""Where RabbitMQ's MQTT plugin publishes and from where it delivers."""
MAX_PASSWORD_BYTES: Final = 1024
RECONNECT_MIN_S: Final = 0.5
RECONNECT_MAX_S: Final = 10.0
POLL_S: Final = 0.25

AMQP_ERRORS: Final = (pika.exceptions.AMQPError, OSError)


@contextlib.contextmanager
def amqp_errors(what: str) -> Iterator[None]:
    """Translate pika's (and the socket's) errors into :class:`Unavailable`."""
    try:
        yield
    except AMQP_ERRORS as exc:
        raise Unavailable(
            f"cannot {what}: {type(exc).__name__} {str(exc)[:200]}",
            hint="check [rabbitmq] amqp_urls, the service user and that the nodes run",
            code="broker.amqp",
        ) from exc


@dataclass(frozen=True)
class AmqpEndpoint:
    """Where and as whom the service speaks AMQP.

    Attributes:
        urls: One ``amqp(s)://host:port`` per node, tried in order.
        username: The service's user.
        password: Its password.
        vhost: The devices' vhost.
        cafile: CA bundle for ``amqps`` (None: the system's).
        timeout_s: Bound on connecting to one node.
    """

    urls: Sequence[str]
    username: str
    password: str
    vhost: str
    cafile: str | None
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> AmqpEndpoint:
        """The endpoint of ``[rabbitmq]``.

        Raises:
            Config: No AMQP URL, or the password file cannot be read.
        """
        rabbit = settings.rabbitmq
        if not rabbit.amqp_urls:
            raise Config("[rabbitmq] amqp_urls is empty", code="broker.amqp.urls")
        path = settings.path(rabbit.password_file)
        try:
            with path.open("rb") as fh:
                password = fh.read(MAX_PASSWORD_BYTES + 1)
        except OSError as exc:
            raise Config(
                f"cannot read the RabbitMQ password file {path}: {exc.strerror}",
                hint="write the service user's password there (mode 0600)",
                code="broker.amqp.password",
            ) from exc
        try:
            text = password.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = ""
        if len(password) > MAX_PASSWORD_BYTES or not text:
            raise Config(
                f"{path} does not hold a password (one line of UTF-8, at most "
                f"{MAX_PASSWORD_BYTES} bytes)",
                hint="write the service user's password there (mode 0600)",
                code="broker.amqp.password",
            )
        return cls(
            urls=tuple(rabbit.amqp_urls),
            username=rabbit.username,
            password=text,
            vhost=rabbit.vhost,
            cafile=str(settings.path(rabbit.cafile)) if rabbit.cafile else None,
            timeout_s=rabbit.request_timeout_s,
        )


def _parameters(endpoint: AmqpEndpoint, url: str) -> pika.ConnectionParameters:
    parts = urlsplit(url)
    tls = parts.scheme == "amqps"
    ssl_options = None
    if tls:
        context = ssl.create_default_context(cafile=endpoint.cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_options = pika.SSLOptions(context, parts.hostname or "")
    return pika.ConnectionParameters(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (5671 if tls else 5672),
        virtual_host=endpoint.vhost,
        credentials=pika.PlainCredentials(endpoint.username, endpoint.password),
        ssl_options=ssl_options,
        socket_timeout=endpoint.timeout_s,
        blocked_connection_timeout=endpoint.timeout_s * 6,
        connection_attempts=1,
        heartbeat=30,
        client_properties={"connection_name": "trustfleet"},
    )


def connect(endpoint: AmqpEndpoint) -> pika.BlockingConnection:
    """A connection to the first node that accepts one.

    Raises:
        Unavailable: None did.
    """
    last = "no URL"
    for url in endpoint.urls:
        try:
            return pika.BlockingConnection(_parameters(endpoint, url))
        except AMQP_ERRORS as exc:
            last = f"{url}: {type(exc).__name__} {str(exc)[:200]}"
            logger.info("AMQP %s", last)
    raise Unavailable(
        f"no RabbitMQ node accepted an AMQP connection ({last})",
        hint="check [rabbitmq] amqp_urls, the service user and that the nodes run",
        code="broker.amqp",
    )


def declare_group_queue(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    queue: str,
    topic_filters: Sequence[str],
) -> None:
    """Declare the durable quorum queue ``queue`` bound to ``amq.topic`` for ``topic_filters``
    (MQTT filters, mapped as the MQTT plugin maps them); again: no change.

    Raises:
        Unavailable: The broker refused or the connection failed.
    """
    with amqp_errors(f"declare the queue {queue}"):
        channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for topic_filter in topic_filters:
            channel.queue_bind(queue, TOPIC_EXCHANGE, routing_key=amqp_routing_key(topic_filter))


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message from a group queue.

    Attributes:
        topic: The MQTT topic it was published on.
        body: Its payload.
        ack: Acknowledges it; callable from any thread (a message of a connection that is gone
            is not acknowledged: RabbitMQ delivers it again).
    """

    topic: str
    body: bytes
    ack: Callable[[], None]


def consume_forever(
    endpoint: AmqpEndpoint,
    *,
    queue: str,
    topic_filters: Sequence[str],
    prefetch: int,
    on_delivery: Callable[[Delivery], None],
    on_consuming: Callable[[bool], None],
    stop: threading.Event,
) -> None:
    """Consume ``queue`` (declared and bound for ``topic_filters``) until ``stop``; reconnect
    with backoff after any failure. ``on_delivery`` runs on this thread; ``on_consuming`` is
    told when consuming starts (True) and ends (False). Never raises :class:`Unavailable`.
    """
    delay = RECONNECT_MIN_S
    while not stop.is_set():
        try:
            _consume(
                endpoint, queue=queue, topic_filters=topic_filters, prefetch=prefetch,
                on_delivery=on_delivery, on_consuming=on_consuming, stop=stop,
            )  # fmt: skip
            delay = RECONNECT_MIN_S
        except Unavailable as exc:
            logger.warning("queue %s: %s (again in %.1f s)", queue, exc.one_line(), delay)
            stop.wait(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)


def _consume(
    endpoint: AmqpEndpoint,
    *,
    queue: str,
    topic_filters: Sequence[str],
    prefetch: int,
    on_delivery: Callable[[Delivery], None],
    on_consuming: Callable[[bool], None],
    stop: threading.Event,
) -> None:
    conn = connect(endpoint)
    try:
        with amqp_errors(f"consume the queue {queue}"):
            channel = conn.channel()
            declare_group_queue(channel, queue, topic_filters)
            channel.basic_qos(prefetch_count=prefetch)

            def deliver(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
                ack = functools.partial(_ack_threadsafe, conn, ch, method.delivery_tag)
                on_delivery(Delivery(topic_of_routing_key(method.routing_key), bytes(body), ack))

            channel.basic_consume(queue, on_message_callback=deliver)
            on_consuming(True)
            while not stop.is_set():
                conn.process_data_events(time_limit=POLL_S)
    finally:
        on_consuming(False)
        with contextlib.suppress(*AMQP_ERRORS):
            if conn.is_open:
                conn.close()


def _ack_threadsafe(conn: Any, channel: Any, tag: int) -> None:
    def ack() -> None:
        if channel.is_open:
            with contextlib.suppress(*AMQP_ERRORS):
                channel.basic_ack(delivery_tag=tag)

    with contextlib.suppress(*AMQP_ERRORS):  # a closed connection: delivered again
        conn.add_callback_threadsafe(ack)


class AmqpPublisher:
    """Publishes to device topics through ``amq.topic`` with publisher confirms.

    Not thread-safe (pika's blocking connection): one thread publishes. Reconnects on the next
    publish after a failure.
    """

    def __init__(self, endpoint: AmqpEndpoint) -> None:
        self._endpoint = endpoint
        self._conn: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._conn is not None and self._conn.is_open

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on the MQTT topic ``topic`` (QoS 1 for an MQTT subscriber);
        returns once the broker confirmed it.

        Raises:
            Unavailable: No node, or the broker did not confirm.
        """
        channel = self._open()
        try:
            with amqp_errors(f"publish on {topic}"):
                channel.basic_publish(
                    TOPIC_EXCHANGE,
                    amqp_routing_key(topic),
                    payload,
                    properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
                )
        except Unavailable:
            self.close()
            raise

    def open(self) -> None:
        """Connect now (a publish connects by itself when needed).

        Raises:
            Unavailable: No node accepted a connection.
        """
        self._open()

    def close(self) -> None:
        """Close the connection (never raises)."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(*AMQP_ERRORS):
                conn.close()

    def _open(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self._channel is not None and self._channel.is_open and self.connected:
            return self._channel
        self.close()
        self._conn = connect(self._endpoint)
        with amqp_errors("open a channel"):
            channel = self._conn.channel()
            channel.confirm_delivery()
        self._channel = channel
        return channel
