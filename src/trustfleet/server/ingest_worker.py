"""The MQTT ingest worker: one process, one MQTT 5 client, batched writes to the store.

Several workers (on one host or many) share ``$share/ingest/<device topics>``: the broker hands
each message to one of them. A worker keeps nothing per device: each batch reads the devices'
states from the store. QoS 1 messages are acknowledged to the broker only after their batch
is committed (or after they were judged malformed), so a crash loses no acknowledged message.

No single message can end a worker: :meth:`IngestWorker._guarded` is the one boundary that
catches what processing one message can raise (:data:`~trustfleet.services.ingest.MESSAGE_FAULTS`),
drops that message alone, counts it by code and logs identifiers only; a batch the store still
refuses is split until the culprit is alone (:func:`~trustfleet.services.ingest.store_isolating`).
Dropped messages are summed per device into rate-limited ``ingest.rejected`` events.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from awscrt import mqtt5

from trustfleet.crt import CRT_ERRORS, suback_callback
from trustfleet.errors import Conflict, TrustFleetError, Unavailable
from trustfleet.monitoring import MetricsRecord
from trustfleet.server._ingest_counters import IngestCounters
from trustfleet.services.attestation import evidence_device, handle_evidence
from trustfleet.services.ingest import (
    MESSAGE_FAULTS,
    BatchOutcome,
    DeviceMessage,
    IngestLimits,
    Rejection,
    apply_retention,
    fault_code,
    parse_message,
    store_isolating,
)
from trustfleet.services.ingest_rejects import RejectLimiter, write_rejections
from trustfleet.services.monitor_ingest import (
    MetricsIngest,
    apply_metrics_retention,
    metrics_device,
)
from trustfleet.services.mqtt_client import ServiceMqttIdentity, new_client
from trustfleet.services.service_signals import ingest_broker_stats
from trustfleet.settings import ServerSettings, load_server_settings
from trustfleet.store import UnitOfWork, create_engine
from trustfleet.wire import (
    BROKER_STATS_FILTER,
    BROKER_STATS_TOPIC,
    INGEST_GROUP,
    shared_filters,
    topic_device,
)

__all__ = ["IngestCounters", "IngestWorker", "ingest_process_main"]

logger = logging.getLogger(__name__)

QUEUE_MAX: Final = 10_000
"""Received messages waiting for a batch; the MQTT thread waits when it is full."""
QUEUE_PUT_TIMEOUT_S: Final = 5.0
STORE_ATTEMPTS: Final = 3
STORE_RETRY_S: Final = 0.5
SUBSCRIBE_TIMEOUT_S: Final = 10.0
CLIENT_ATTEMPTS: Final = 4
CLIENT_RETRY_S: Final = 0.5
"""Back-off step between attempts to open the service key for TLS (0.5, 1, 1.5 s)."""


def ingest_client_id(identity: str) -> str:
    """A client id no other ingest worker has: equal ids make the broker drop one connection.

    The broker's guard accepts a service's connection only with ``<identity>-<suffix>``
    (docs/mqtt.md). (Regression: ids built from ``id(self)`` were equal in identically
    spawned workers.)
    """
    return f"{identity}-ingest-{os.getpid()}-{secrets.token_hex(4)}"


_Item = tuple[str, bytes, Any]  # topic, payload, puback control handle (None for QoS 0)
_T = TypeVar("_T")


def _topic_device(topic: str) -> str:
    """The device id of a device topic, or "" (identifiers only go to logs and events)."""
    return topic_device(topic) or ""


class IngestWorker:
    """Receives device messages and writes them in batches.

    Args:
        settings: The server home.
        uow: The store.
        port: The broker port (default: from the settings).
        now: The clock.
        run_retention: Whether this worker runs the periodic retention job.
    """

    def __init__(
        self,
        settings: ServerSettings,
        *,
        uow: UnitOfWork,
        port: int | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        run_retention: bool = True,
    ) -> None:
        self.settings = settings
        self.uow = uow
        self.counters = IngestCounters()
        self.subscribed = threading.Event()
        self._now = now
        self._run_retention = run_retention
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=QUEUE_MAX)
        self._limits = IngestLimits.from_settings(settings)
        self._rejects = RejectLimiter(
            window=timedelta(seconds=settings.ingest.rejected_event_window_s),
            max_devices=settings.ingest.rejected_max_devices,
        )
        self._port = port
        self._metrics = MetricsIngest(settings, uow=uow)
        self._client: mqtt5.Client | None = None

    def run(self, stop: threading.Event) -> None:
        """Connect, subscribe (again after every reconnect) and ingest until ``stop``."""
        self._start_source(stop)
        next_retention = time.monotonic()
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch:
                    self._process(batch)
                self._write_rejections(flush=False)
                if self._run_retention and time.monotonic() >= next_retention:
                    self._retention()
                    next_retention = time.monotonic() + self.settings.broker.retention_interval_s
        finally:
            self._stop_source()
            self._write_rejections(flush=True)
            c = self.counters
            logger.info(
                "ingest stopped: %d received, %d rows, %d dropped (%d isolated by the store), "
                "%d refused, %d ingest.rejected events; by code: %s",
                c.received, c.stored_rows, c.faults, c.isolated, c.refused, c.rejected_events,
                c.by_code,
            )  # fmt: skip

    # -- where messages come from: MQTT shared subscriptions (an AMQP queue: _ingest_amqp) ----

    def _start_source(self, stop: threading.Event) -> None:
        self._client = self._new_client(stop)
        self._client.start()

    def _stop_source(self) -> None:
        if self._client is not None:
            self._client.stop()

    def _new_client(self, stop: threading.Event) -> mqtt5.Client:
        """The MQTT client; a token that fails transiently (observed under load: SoftHSM2's
        CKR_GENERAL_ERROR while other processes open the same token) is tried again."""
        ident = ServiceMqttIdentity.from_settings(self.settings, port=self._port)
        for attempt in range(1, CLIENT_ATTEMPTS + 1):
            try:
                return new_client(
                    ident,
                    client_id=ingest_client_id(ident.identity),
                    on_publish=self._on_publish,
                    on_connected=self._subscribe,
                )
            except Unavailable as exc:
                if attempt == CLIENT_ATTEMPTS or stop.is_set():
                    raise
                logger.warning("ingest client (attempt %d): %s", attempt, exc.one_line())
                stop.wait(CLIENT_RETRY_S * attempt)
        raise AssertionError("unreachable")  # the loop returns or raises

    # -- MQTT side (awscrt's thread) ------------------------------------------------

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        packet = data.publish_packet
        handle = None
        if packet.qos == mqtt5.QoS.AT_LEAST_ONCE and data.acquire_publish_acknowledgement_control:
            handle = data.acquire_publish_acknowledgement_control()
        item = (packet.topic or "", bytes(packet.payload or b""), handle)
        try:
            self._queue.put(item, timeout=QUEUE_PUT_TIMEOUT_S)
        except queue.Full:
            self.counters.overflow += 1
            logger.warning("ingest queue full; dropping a message from %s", item[0])
            self._ack([item])

    def _subscribe(self) -> None:
        client = self._client
        if client is None:
            return
        subscriptions = [
            mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)
            for topic in _filters()
        ]
        future = client.subscribe(mqtt5.SubscribePacket(subscriptions=subscriptions))
        future.add_done_callback(
            suback_callback(what="the ingest subscriptions", on_granted=self._subscribed)
        )

    def _subscribed(self, _codes: list[int]) -> None:
        logger.info("ingest subscribed to %s", ", ".join(_filters()))
        self.subscribed.set()

    def _ack(self, items: list[_Item]) -> None:
        client = self._client
        for _topic, _payload, handle in items:
            if handle is not None and client is not None:
                with contextlib.suppress(*CRT_ERRORS):  # connection gone: the broker resends
                    client.invoke_publish_acknowledgement(handle)

    # -- batching (the worker's main thread) ------------------------------------------

    def _collect(self, stop: threading.Event) -> list[_Item]:
        broker = self.settings.broker
        try:
            first = self._queue.get(timeout=0.25)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + broker.ingest_batch_interval_s
        while len(batch) < broker.ingest_batch_max and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[_Item]) -> None:
        """Process one batch of received messages (the MQTT-free core of the worker)."""
        self._process(batch)

    def _guarded(self, topic: str, call: Callable[[], _T], *, now: datetime) -> _T | None:
        """THE boundary between one device message and the worker.

        Runs ``call`` (the processing of the message on ``topic``); if it raises a message
        fault, the message is dropped alone: counted by code, logged with identifiers only
        (device, topic kind, code, exception type; never the payload) and summed into the
        device's ``ingest.rejected`` event. Returns None then.
        """
        try:
            return call()
        except MESSAGE_FAULTS as exc:
            self._count_drop(_topic_device(topic), fault_code(exc), now=now, exc=exc)
            logger.info(
                "dropped a message of %s on %s: %s (%s)",
                _topic_device(topic) or "?", topic.rpartition("/")[2], fault_code(exc),
                type(exc).__name__,
            )  # fmt: skip
            return None

    def _count_drop(
        self, device_id: str, code: str, *, now: datetime, exc: BaseException | None = None
    ) -> None:
        c = self.counters
        c.faults += 1
        c.by_code[code] = c.by_code.get(code, 0) + 1
        if code.startswith("ingest.") and code != "ingest.internal":
            c.malformed += 1
        # Duplicates and late evidence (Conflict) and store outages are not the device's fault.
        if not isinstance(exc, Conflict | Unavailable):
            self._rejects.add(device_id, code, now=now)

    def _process(self, batch: list[_Item]) -> None:
        now = self._now()
        self.counters.received += len(batch)
        parsed: list[DeviceMessage] = []
        to_store: list[_Item] = []
        dropped: list[_Item] = []
        batch = self._broker_stats(batch, now=now)
        for item in self._metrics_of(batch, now=now):
            topic, payload, _handle = item
            device_id = evidence_device(topic)
            if device_id is not None:
                self._guarded(topic, partial(self._evidence, device_id, payload, now), now=now)
                self._ack([item])  # each evidence is its own transaction
                continue
            message = self._guarded(topic, partial(self._parse, topic, payload, now), now=now)
            if message is None:
                dropped.append(item)
            else:
                parsed.append(message)
                to_store.append(item)
        self._ack(dropped)
        outcome = self._store(parsed, now=now)
        if outcome is None:
            self.counters.failed_batches += 1
            return  # not acknowledged: the broker resends them to a worker of the group
        self.counters.stored_rows += outcome.telemetry_rows
        self.counters.accepted += outcome.accepted
        self.counters.refused += outcome.refused
        if outcome.refused_devices:
            logger.info("dropped messages of devices not enrolled: %s", outcome.refused_devices)
        self._ack(to_store)

    def _metrics_of(self, batch: list[_Item], *, now: datetime) -> list[_Item]:
        """Decode the batch's metrics reports and store them in one transaction; the rest."""
        items: list[_Item] = []
        decoded: list[MetricsRecord | None] = []
        rest: list[_Item] = []
        for item in batch:
            topic, payload, _handle = item
            device_id = metrics_device(topic)  # once per message: this is the hot path
            if device_id is None:
                rest.append(item)
                continue
            decode = partial(self._metrics.decode, device_id, payload, now=now)
            items.append(item)
            decoded.append(self._guarded(topic, decode, now=now))
        try:
            outcome = self._metrics.store([r for r in decoded if r is not None], now=now)
        except Unavailable as exc:  # the decoded ones stay unacknowledged: the broker resends
            logger.warning("metrics batch failed: %s", exc.one_line())
            self._ack([item for item, r in zip(items, decoded, strict=True) if r is None])
        else:
            for device_id, code in outcome.rejected:
                self._count_drop(device_id, code, now=now)
            self.counters.stored_rows += outcome.stored
            self._ack(items)
        return rest

    def _broker_stats(self, batch: list[_Item], *, now: datetime) -> list[_Item]:
        """Store the broker's statistics chunks of ``batch``; the rest of it is returned.
        A chunk is acknowledged once stored or refused, not on a store outage (resent)."""
        stats = [item for item in batch if item[0] == BROKER_STATS_TOPIC]
        if stats:
            try:
                payloads = [payload for _topic, payload, _handle in stats]
                stored = ingest_broker_stats(self, payloads, now=now)
                self.counters.broker_stats_windows += stored
                self._ack(stats)
            except TrustFleetError as exc:
                logger.warning("broker statistics not stored: %s", exc.one_line())
                if not isinstance(exc, Unavailable):
                    self._ack(stats)
        return [item for item in batch if item[0] != BROKER_STATS_TOPIC]

    def _parse(self, topic: str, payload: bytes, now: datetime) -> DeviceMessage:
        return parse_message(topic, payload, now=now, limits=self._limits)

    def _evidence(self, device_id: str, payload: bytes, now: datetime) -> None:
        handle_evidence(self, device_id=device_id, payload=payload, now=now)

    def _store(self, messages: list[DeviceMessage], *, now: datetime) -> BatchOutcome | None:
        """Store valid messages, isolating any the store refuses; None if it stayed down."""
        if not messages:
            return BatchOutcome()
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                outcome, rejections = store_isolating(self.uow, messages, now=now)
            except Unavailable as exc:
                logger.warning("ingest batch failed (attempt %d): %s", attempt, exc.one_line())
                time.sleep(STORE_RETRY_S)
                continue
            self._isolated(rejections, now=now)
            return outcome
        return None

    def _isolated(self, rejections: tuple[Rejection, ...], *, now: datetime) -> None:
        for rejection in rejections:
            self.counters.isolated += 1
            self._count_drop(rejection.device_id, rejection.code, now=now)

    def _write_rejections(self, *, flush: bool) -> None:
        now = self._now()
        summaries = self._rejects.due(now=now, flush=flush)
        window_s = self.settings.ingest.rejected_event_window_s
        self.counters.rejected_events += write_rejections(
            self.uow, summaries, now=now, window_s=window_s
        )

    def _retention(self) -> None:
        broker = self.settings.broker
        try:
            apply_retention(
                self.uow,
                now=self._now(),
                retention_days=broker.telemetry_retention_days,
                max_rows=broker.telemetry_max_rows,
            )
            days = self.settings.monitoring.metrics_retention_days
            apply_metrics_retention(self.uow, now=self._now(), retention_days=days)
        except TrustFleetError as exc:
            logger.warning("telemetry retention failed: %s", exc.one_line())


def _filters() -> tuple[str, ...]:
    """The worker's shared subscriptions: device topics, then the broker's statistics."""
    return (*shared_filters(INGEST_GROUP), BROKER_STATS_FILTER)


def ingest_process_main(home: str, port: int, index: int, ready: Any) -> None:
    """Entry point of one ingest process (``multiprocessing`` spawn target).

    Args:
        home: The server home.
        port: The broker port.
        index: The worker's number; worker 0 runs the retention job.
        ready: A ``multiprocessing.Event`` set once the subscriptions are granted.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    settings = load_server_settings(Path(home))
    engine = create_engine(settings.store_url())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    kind: type[IngestWorker] = IngestWorker
    if settings.broker.kind == "rabbitmq":
        from trustfleet.server._ingest_amqp import AmqpIngestWorker  # noqa: PLC0415  # a cycle

        kind = AmqpIngestWorker
    worker = kind(settings, uow=UnitOfWork(engine), port=port, run_retention=index == 0)

    def relay_ready() -> None:
        if worker.subscribed.wait(timeout=3600) and not stop.is_set():
            ready.set()

    threading.Thread(target=relay_ready, name="ingest-ready", daemon=True).start()
    try:
        worker.run(stop)
    finally:
        engine.dispose()
