"""The MQTT ingest worker: one process, one MQTT 5 client, batched writes to the store.

Several workers (on one host or many) share ``$share/ingest/tf/v1/d/+/…``: the broker hands
each message to one of them. A worker keeps nothing per device: each batch reads the devices'
states from the store. QoS 1 messages are acknowledged to the broker only after their batch
is committed (or after they were judged malformed), so a crash loses no acknowledged message.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from awscrt import mqtt5

from trustfleet.errors import InvalidInput, TrustFleetError
from trustfleet.services.attestation import (
    EVIDENCE_TOPIC_SUFFIX,
    evidence_device,
    handle_evidence,
)
from trustfleet.services.ingest import (
    DeviceMessage,
    apply_retention,
    ingest_subscriptions,
    parse_message,
    store_batch,
)
from trustfleet.services.mqtt_client import ServiceMqttIdentity, new_client
from trustfleet.settings import ServerSettings, load_server_settings
from trustfleet.store import UnitOfWork, create_engine

__all__ = ["IngestCounters", "IngestWorker", "ingest_process_main"]

logger = logging.getLogger(__name__)

QUEUE_MAX: Final = 10_000
"""Received messages waiting for a batch; the MQTT thread waits when it is full."""
QUEUE_PUT_TIMEOUT_S: Final = 5.0
STORE_ATTEMPTS: Final = 3
STORE_RETRY_S: Final = 0.5
SUBSCRIBE_TIMEOUT_S: Final = 10.0


def ingest_client_id(identity: str) -> str:
    """A client id no other ingest worker has: equal ids make the broker drop one connection.

    The broker's guard accepts a service's connection only with ``<identity>-<suffix>``
    (docs/mqtt.md). (Regression: ids built from ``id(self)`` were equal in identically
    spawned workers.)
    """
    return f"{identity}-ingest-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass
class IngestCounters:
    """What one worker did since it started (logged at stop)."""

    received: int = 0
    stored_rows: int = 0
    accepted: int = 0
    malformed: int = 0
    refused: int = 0
    overflow: int = 0
    failed_batches: int = 0
    by_code: dict[str, int] = field(default_factory=dict)


_EVIDENCE_SUBSCRIPTION: Final = f"$share/ingest/tf/v1/d/+/{EVIDENCE_TOPIC_SUFFIX}"
_Item = tuple[str, bytes, Any]  # topic, payload, puback control handle (None for QoS 0)


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
        self._ident = ServiceMqttIdentity.from_settings(settings, port=port)
        self._client: mqtt5.Client | None = None

    def run(self, stop: threading.Event) -> None:
        """Connect, subscribe (again after every reconnect) and ingest until ``stop``."""
        self._client = new_client(
            self._ident,
            client_id=ingest_client_id(self._ident.identity),
            on_publish=self._on_publish,
            on_connected=self._subscribe,
        )
        self._client.start()
        next_retention = time.monotonic()
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch:
                    self._process(batch)
                if self._run_retention and time.monotonic() >= next_retention:
                    self._retention()
                    next_retention = time.monotonic() + self.settings.broker.retention_interval_s
        finally:
            self._client.stop()
            c = self.counters
            logger.info(
                "ingest stopped: %d received, %d rows, %d malformed, %d refused",
                c.received, c.stored_rows, c.malformed, c.refused,
            )  # fmt: skip

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
            for topic in (*ingest_subscriptions(), _EVIDENCE_SUBSCRIPTION)
        ]
        future = client.subscribe(mqtt5.SubscribePacket(subscriptions=subscriptions))
        future.add_done_callback(self._subscribed)

    def _subscribed(self, future: Any) -> None:
        try:
            suback = future.result()
        except Exception as exc:  # awscrt's errors
            logger.warning("ingest subscribe failed: %s", type(exc).__name__)
            return
        codes = list(getattr(suback, "reason_codes", []))
        if all(int(code) <= int(mqtt5.SubackReasonCode.GRANTED_QOS_2) for code in codes):
            logger.info("ingest subscribed to %s", ", ".join(ingest_subscriptions()))
            self.subscribed.set()
        else:
            logger.error("the broker refused the ingest subscriptions: %s", codes)

    def _ack(self, items: list[_Item]) -> None:
        client = self._client
        for _topic, _payload, handle in items:
            if handle is not None and client is not None:
                with contextlib.suppress(Exception):  # connection gone: the broker resends
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

    def _process(self, batch: list[_Item]) -> None:
        self.counters.received += len(batch)
        evidence = [item for item in batch if evidence_device(item[0]) is not None]
        if evidence:
            self._process_evidence(evidence)
            batch = [item for item in batch if evidence_device(item[0]) is None]
        messages: list[DeviceMessage] = []
        for topic, payload, _handle in batch:
            try:
                messages.append(
                    parse_message(topic, payload, max_bytes=self.settings.broker.max_payload_bytes)
                )
            except InvalidInput as exc:
                self.counters.malformed += 1
                code = exc.code or "ingest.invalid"
                self.counters.by_code[code] = self.counters.by_code.get(code, 0) + 1
                logger.debug("dropped a message on %s: %s", topic, code)
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                outcome = store_batch(self.uow, messages, now=self._now())
                break
            except TrustFleetError as exc:
                logger.warning("ingest batch failed (attempt %d): %s", attempt, exc.one_line())
                time.sleep(STORE_RETRY_S)
        else:
            self.counters.failed_batches += 1
            return  # not acknowledged: the broker resends them to a worker of the group
        self.counters.stored_rows += outcome.telemetry_rows
        self.counters.accepted += outcome.accepted
        self.counters.refused += outcome.refused
        if outcome.refused_devices:
            logger.info("dropped messages of devices not enrolled: %s", outcome.refused_devices)
        self._ack(batch)

    def _process_evidence(self, items: list[_Item]) -> None:
        """Verify attestation evidence one message at a time (each is its own transaction)."""
        for item in items:
            topic, payload, _handle = item
            device_id = evidence_device(topic) or ""
            try:
                handle_evidence(self, device_id=device_id, payload=payload, now=self._now())
            except TrustFleetError as exc:
                code = exc.code or exc.category
                self.counters.by_code[code] = self.counters.by_code.get(code, 0) + 1
                logger.info("evidence of %s not verified: %s", device_id, exc.one_line())
            self._ack([item])

    def _retention(self) -> None:
        broker = self.settings.broker
        try:
            apply_retention(
                self.uow,
                now=self._now(),
                retention_days=broker.telemetry_retention_days,
                max_rows=broker.telemetry_max_rows,
            )
        except TrustFleetError as exc:
            logger.warning("telemetry retention failed: %s", exc.one_line())


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
    worker = IngestWorker(settings, uow=UnitOfWork(engine), port=port, run_retention=index == 0)

    def relay_ready() -> None:
        if worker.subscribed.wait(timeout=3600) and not stop.is_set():
            ready.set()

    threading.Thread(target=relay_ready, name="ingest-ready", daemon=True).start()
    try:
        worker.run(stop)
    finally:
        engine.dispose()
